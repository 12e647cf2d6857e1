package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
)

func TestDefaultsMatchUpstream(t *testing.T) {
	cfg, warnings := mustParse(t, minimalTOML, testEnv(nil))
	if len(warnings) != 0 {
		t.Errorf("warnings = %v, want none", warnings)
	}
	cases := []struct {
		description string
		got         any
		want        any
	}{
		{"etcd namespace defaults to local", cfg.Etcd.Namespace, "local"},
		{"etcd addr defaults to 127.0.0.1:2379", cfg.Etcd.Addrs, []HostPort{{"127.0.0.1", 2379}}},
		{"etcd is external by default", cfg.Etcd.Embedded, false},
		{"rpc-listen-addr 0.0.0.0:6001", cfg.Agent.RPCListenAddr, HostPort{"0.0.0.0", 6001}},
		{"no advertised-rpc-addr", cfg.Agent.AdvertisedRPCAddr, (*HostPort)(nil)},
		{"internal-addr 0.0.0.0:6003", cfg.Agent.InternalAddr, HostPort{"0.0.0.0", 6003}},
		{"ipc-base-path", cfg.Agent.IPCBasePath, "/tmp/backend.ai/ipc"},
		{"var-base-path is relative to the working dir", cfg.Agent.VarBasePath, "/srv/cwd/var/lib/backend.ai"},
		{"pid-file /dev/null", cfg.Agent.PIDFile, "/dev/null"},
		{"image-commit-path is relative to the working dir", cfg.Agent.ImageCommitPath, "/srv/cwd/tmp/backend.ai/commit"},
		{"id is i-<hostname>", cfg.Agent.ID, "i-node1"},
		{"scaling-group-type compute", cfg.Agent.ScalingGroupType, ResourceGroupCompute},
		{"allow-compute-plugins unset", cfg.Agent.AllowComputePlugins, []string(nil)},
		{"block-compute-plugins unset", cfg.Agent.BlockComputePlugins, []string(nil)},
		{"agent-sock-port 6007", cfg.Agent.AgentSockPort, 6007},
		{"kernel-creation-concurrency 4", cfg.Agent.KernelCreationConcurrency, 4},
		{"sync-container-lifecycles on, every 10s", cfg.Agent.SyncContainerLifecycles, SyncContainerLifecyclesConfig{true, 10 * time.Second}},
		{"node metrics every 30s", cfg.Agent.UtilizationMetric.Node, MetricCollectionConfig{true, 30 * time.Second}},
		{"plugin-dirs", cfg.Agent.PluginDirs, []string{DefaultPluginDir}},
		{"plugin-start-timeout", cfg.Agent.PluginStartTimeout, 2 * time.Minute},
		{"non-root plugin-runtime-dir falls back to ipc-base-path", cfg.Agent.PluginRuntimeDir, "/tmp/backend.ai/ipc/plugins"},
		{"bind-host empty (detect)", cfg.Container.BindHost, ""},
		{"kernel-uid -1", cfg.Container.KernelUID, -1},
		{"kernel-gid -1", cfg.Container.KernelGID, -1},
		{"port-range 30000-31000", cfg.Container.PortRange, PortRange{30000, 31000}},
		{"port-reuse-cooldown 60s", cfg.Container.PortReuseCooldown, 60 * time.Second},
		{"stats-type docker", cfg.Container.StatsType, StatsDocker},
		{"sandbox-type docker", cfg.Container.SandboxType, SandboxDocker},
		{"scratch-type hostdir", cfg.Container.ScratchType, ScratchHostDir},
		{"scratch-root ./scratches", cfg.Container.ScratchRoot, "/srv/cwd/scratches"},
		{"scratch-size 0", cfg.Container.ScratchSize, ByteSize(0)},
		{"krunner-volumes unset", cfg.Container.KrunnerVolumes, map[string]string(nil)},
		{"reserved-cpu 1", cfg.Resource.ReservedCPU, 1},
		{"reserved-mem 1G", cfg.Resource.ReservedMem, ByteSize(1 << 30)},
		{"reserved-disk 8G", cfg.Resource.ReservedDisk, ByteSize(8 << 30)},
		{"allocation-mode shared", cfg.Resource.AllocationMode, AllocationShared},
		{"no allocations", cfg.Resource.Allocations, (*ResourceAllocations)(nil)},
		{"memory-align-size 16M", cfg.Resource.MemoryAlignSize, ByteSize(16 << 20)},
		{"allocation-order", cfg.Resource.AllocationOrder, []string{"cuda", "rocm", "tpu", "cpu", "mem"}},
		{"affinity-policy interleaved", cfg.Resource.AffinityPolicy, AffinityInterleaved},
		{"heartbeat-interval 20s", cfg.Debug.HeartbeatInterval, 20 * time.Second},
		{"api pull-timeout 7200s", cfg.API.PullTimeout, 7200 * time.Second},
		{"api push-timeout none", cfg.API.PushTimeout, time.Duration(0)},
		{"debug off", cfg.Debug.Enabled, false},
		{"logging level info", cfg.Logging.Level, LogInfo},
		{"logging format console", cfg.Logging.Format, LogFormatConsole},
		{"no direct redis", cfg.Redis, (*RedisConfig)(nil)},
		{"watcher service-addr 0.0.0.0:6009", cfg.Watcher.ServiceAddr, HostPort{"0.0.0.0", 6009}},
		{"watcher service-addr not configured", cfg.Watcher.ServiceAddrConfigured, false},
		{"watcher target-service", cfg.Watcher.TargetService, "backendai-agent.service"},
		{"no plugin tables", cfg.Plugins, map[string]map[string]any{}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestPluginRuntimeDirDefault(t *testing.T) {
	cases := []struct {
		description string
		uid         int
		vars        map[string]string
		want        string
	}{
		{"root uses /run", 0, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"}, "/run/baiagent/plugins"},
		{"a user with XDG_RUNTIME_DIR uses it", 1000, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/baiagent/plugins"},
		{"a relative XDG_RUNTIME_DIR is ignored", 1000, map[string]string{"XDG_RUNTIME_DIR": "rel"}, "/tmp/backend.ai/ipc/plugins"},
		{"a user without it falls back to ipc-base-path", 1000, nil, "/tmp/backend.ai/ipc/plugins"},
	}
	for _, tc := range cases {
		env := testEnv(tc.vars)
		env.UID = tc.uid
		cfg, _ := mustParse(t, minimalTOML, env)
		if cfg.Agent.PluginRuntimeDir != tc.want {
			t.Errorf("%s: plugin-runtime-dir = %q, want %q", tc.description, cfg.Agent.PluginRuntimeDir, tc.want)
		}
	}
}

func TestFileValuesAreDecoded(t *testing.T) {
	cfg, warnings := mustParse(t, richTOML, testEnv(nil))
	if want := []Warning{{WarnIgnoredKey, "agent.scaling-group-type", ""}}; !reflect.DeepEqual(withoutNotes(warnings), want) {
		t.Errorf("warnings = %v, want %v", warnings, want)
	}
	cases := []struct {
		description string
		got         any
		want        any
	}{
		{"etcd addr list mixes string and table", cfg.Etcd.Addrs, []HostPort{{"10.0.0.1", 2379}, {"10.0.0.2", 2380}}},
		{"etcd user", cfg.Etcd.User, "agent"},
		{"backend via mode", cfg.Agent.Backend, BackendDocker},
		{"IPv6 host normalized", cfg.Agent.RPCListenAddr, HostPort{"::1", 7001}},
		{"advertised addr as array", *cfg.Agent.AdvertisedRPCAddr, HostPort{"203.0.113.9", 16001}},
		{"internal addr via service-addr", cfg.Agent.InternalAddr, HostPort{"0.0.0.0", 16003}},
		{"key path relative to the file", cfg.Agent.RPCAuthManagerPublicKey, "/etc/backend.ai/keys/manager.key"},
		{"id pinned", cfg.Agent.ID, "i-pinned"},
		{"scaling-group-type case-insensitive", cfg.Agent.ScalingGroupType, ResourceGroupStorage},
		{"allow list", cfg.Agent.AllowComputePlugins, []string{"cuda", "ai.backend.accelerator.rocm"}},
		{"empty block list is not nil", cfg.Agent.BlockComputePlugins, []string{}},
		{"integer from string", cfg.Agent.KernelCreationConcurrency, 8},
		{"plugin dirs resolved against the file", cfg.Agent.PluginDirs, []string{"/etc/backend.ai/plugins", "/opt/plugins"}},
		{"checksums normalized", cfg.Agent.PluginChecksums, map[string]string{
			"cuda": "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
			"rocm": "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		}},
		{"start timeout in seconds", cfg.Agent.PluginStartTimeout, 45 * time.Second},
		{"runtime dir", cfg.Agent.PluginRuntimeDir, "/run/p"},
		{"sync lifecycles", cfg.Agent.SyncContainerLifecycles, SyncContainerLifecyclesConfig{false, 2500 * time.Millisecond}},
		{"bind-host via kernel-host", cfg.Container.BindHost, "10.1.1.1"},
		{"kernel-uid by user name", cfg.Container.KernelUID, 1001},
		{"kernel-gid numeric string", cfg.Container.KernelGID, 2002},
		{"port range with a string port", cfg.Container.PortRange, PortRange{40000, 40100}},
		{"scratch-size", cfg.Container.ScratchSize, ByteSize(10 << 30)},
		{"krunner volumes", cfg.Container.KrunnerVolumes, map[string]string{"/opt/krunner": "/opt/backend.ai/krunner"}},
		{"reserved-mem lower-case unit", cfg.Resource.ReservedMem, ByteSize(512 << 20)},
		{"manual mode", cfg.Resource.AllocationMode, AllocationManual},
		{"affinity policy kebab-case", cfg.Resource.AffinityPolicy, AffinityPreferSingleNode},
		{"empty allocation order", cfg.Resource.AllocationOrder, []string{}},
		{"allocations cpu", cfg.Resource.Allocations.CPU, 8},
		{"allocations mem", cfg.Resource.Allocations.Mem, ByteSize(64 << 30)},
		{"allocation devices exact", cfg.Resource.Allocations.Devices["cuda.device"].String(), "1.5"},
		{"allocation devices from float", cfg.Resource.Allocations.Devices["cuda.shares"].Equal(decimal.RequireFromString("0.25")), true},
		{"push-timeout in seconds", cfg.API.PushTimeout, 1800 * time.Second},
		{"log level lower-cased", cfg.Logging.Level, LogDebug},
		{"log format", cfg.Logging.Format, LogFormatJSON},
		{"redis", *cfg.Redis, RedisConfig{RedisTarget: RedisTarget{Addr: HostPort{"127.0.0.1", 6379}, Password: "r"}, DB: 3}},
		{"watcher addr configured", cfg.Watcher.ServiceAddrConfigured, true},
		{"watcher addr", cfg.Watcher.ServiceAddr, HostPort{"0.0.0.0", 16009}},
		{"watcher ssl-privkey alias", cfg.Watcher.SSLKey, "/etc/backend.ai/watcher.key"},
		{"plugin table kept as is", cfg.Plugins["cuda"], map[string]any{"fake-devices": "fixtures/cuda-2xA100.json", "count": int64(2)}},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	cases := []struct {
		description string
		vars        map[string]string
		got         func(*Config) any
		want        any
	}{
		{"BACKEND_NAMESPACE", map[string]string{"BACKEND_NAMESPACE": "ns1"},
			func(c *Config) any { return c.Etcd.Namespace }, "ns1"},
		{"BACKEND_ETCD_ADDR single", map[string]string{"BACKEND_ETCD_ADDR": "etcd.local:2381"},
			func(c *Config) any { return c.Etcd.Addrs }, []HostPort{{"etcd.local", 2381}}},
		{"BACKEND_ETCD_ADDR comma-separated", map[string]string{"BACKEND_ETCD_ADDR": "a:1, b:2"},
			func(c *Config) any { return c.Etcd.Addrs }, []HostPort{{"a", 1}, {"b", 2}}},
		{"BACKEND_ETCD_USER", map[string]string{"BACKEND_ETCD_USER": "u"},
			func(c *Config) any { return c.Etcd.User }, "u"},
		{"BACKEND_ETCD_PASSWORD", map[string]string{"BACKEND_ETCD_PASSWORD": "p"},
			func(c *Config) any { return c.Etcd.Password }, "p"},
		{"BACKEND_AGENT_HOST_OVERRIDE keeps the file's port", map[string]string{"BACKEND_AGENT_HOST_OVERRIDE": "10.0.0.5"},
			func(c *Config) any { return c.Agent.RPCListenAddr }, HostPort{"10.0.0.5", 6100}},
		{"BACKEND_AGENT_PORT keeps the file's host", map[string]string{"BACKEND_AGENT_PORT": "7001"},
			func(c *Config) any { return c.Agent.RPCListenAddr }, HostPort{"192.0.2.1", 7001}},
		{"BACKEND_PID_FILE relative to the working dir", map[string]string{"BACKEND_PID_FILE": "run/agent.pid"},
			func(c *Config) any { return c.Agent.PIDFile }, "/srv/cwd/run/agent.pid"},
		{"BACKEND_CONTAINER_PORT_RANGE with a dash", map[string]string{"BACKEND_CONTAINER_PORT_RANGE": "40000-41000"},
			func(c *Config) any { return c.Container.PortRange }, PortRange{40000, 41000}},
		{"BACKEND_CONTAINER_PORT_RANGE as an array", map[string]string{"BACKEND_CONTAINER_PORT_RANGE": "[40000, 41000]"},
			func(c *Config) any { return c.Container.PortRange }, PortRange{40000, 41000}},
		{"BACKEND_BIND_HOST_OVERRIDE", map[string]string{"BACKEND_BIND_HOST_OVERRIDE": "10.9.9.9"},
			func(c *Config) any { return c.Container.BindHost }, "10.9.9.9"},
		{"BACKEND_SANDBOX_TYPE", map[string]string{"BACKEND_SANDBOX_TYPE": "docker"},
			func(c *Config) any { return c.Container.SandboxType }, SandboxDocker},
		{"BACKEND_CPU_OVERCOMMIT_FACTOR becomes the cpu plugin's key", map[string]string{"BACKEND_CPU_OVERCOMMIT_FACTOR": "4"},
			func(c *Config) any { return c.Plugins["cpu"]["cpu-overcommit-factor"] }, int64(4)},
		{"BACKEND_MEM_OVERCOMMIT_FACTOR becomes the cpu plugin's key", map[string]string{"BACKEND_MEM_OVERCOMMIT_FACTOR": "2"},
			func(c *Config) any { return c.Plugins["cpu"]["mem-overcommit-factor"] }, int64(2)},
		{"BACKEND_SCRATCH_ROOT", map[string]string{"BACKEND_SCRATCH_ROOT": "/data/scratch"},
			func(c *Config) any { return c.Container.ScratchRoot }, "/data/scratch"},
		{"BACKEND_WATCHER_SERVICE_IP marks the addr configured", map[string]string{"BACKEND_WATCHER_SERVICE_IP": "127.0.0.1"},
			func(c *Config) any { return []any{c.Watcher.ServiceAddr, c.Watcher.ServiceAddrConfigured} },
			[]any{HostPort{"127.0.0.1", 6009}, true}},
		{"BACKEND_WATCHER_SERVICE_PORT", map[string]string{"BACKEND_WATCHER_SERVICE_PORT": "6099"},
			func(c *Config) any { return c.Watcher.ServiceAddr }, HostPort{"0.0.0.0", 6099}},
		{"an invalid file value is replaced by a valid env value", map[string]string{"BACKEND_CONTAINER_PORT_RANGE": "1-2"},
			func(c *Config) any { return c.Container.PortRange }, PortRange{1, 2}},
	}
	base := withSection("agent", `rpc-listen-addr = "192.0.2.1:6100"`)
	for _, tc := range cases {
		text := base
		if tc.description == "an invalid file value is replaced by a valid env value" {
			text = withSection("container", `port-range = [31000, 30000]`)
		}
		cfg, _, err := Parse([]byte(text), "/etc/backend.ai/agent.toml", testEnv(tc.vars))
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		if got := tc.got(cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, got, tc.want)
		}
	}
}

func TestEnvOverrideListIsComplete(t *testing.T) {
	// Every override must take effect on its key, or the list and the code drifted.
	want := map[string]bool{
		"BACKEND_NAMESPACE": true, "BACKEND_ETCD_ADDR": true, "BACKEND_ETCD_USER": true,
		"BACKEND_ETCD_PASSWORD": true, "BACKEND_AGENT_HOST_OVERRIDE": true, "BACKEND_AGENT_PORT": true,
		"BACKEND_PID_FILE": true, "BACKEND_CONTAINER_PORT_RANGE": true, "BACKEND_BIND_HOST_OVERRIDE": true,
		"BACKEND_SANDBOX_TYPE": true, "BACKEND_SCRATCH_ROOT": true, "BACKEND_WATCHER_SERVICE_IP": true,
		"BACKEND_WATCHER_SERVICE_PORT": true, "BACKEND_CPU_OVERCOMMIT_FACTOR": true, "BACKEND_MEM_OVERCOMMIT_FACTOR": true,
	}
	for _, o := range EnvOverrides() {
		if !want[o.Env] {
			t.Errorf("unexpected override %s", o.Env)
		}
		delete(want, o.Env)
	}
	for name := range want {
		t.Errorf("override %s is missing from EnvOverrides()", name)
	}
}

func TestEnvCreatesMissingSection(t *testing.T) {
	// Upstream's override_key creates the table, so [container] may be absent
	// when a BACKEND_* variable writes into it.
	text := strings.Replace(minimalTOML, "[container]\n", "", 1)
	description := "BACKEND_SCRATCH_ROOT stands in for a missing [container]"
	if _, _, err := Parse([]byte(text), "", testEnv(map[string]string{"BACKEND_SCRATCH_ROOT": "/s"})); err != nil {
		t.Errorf("%s: %v", description, err)
	}
	problems := problemsOf(t, text, testEnv(nil))
	if len(problems) != 1 || problems[0].Key != "container" {
		t.Errorf("without the variable: problems = %v, want one for container", problems)
	}
}

func TestBadEnvValuesNameTheVariable(t *testing.T) {
	cases := []struct {
		description string
		vars        map[string]string
		wantEnv     string
		wantKey     string
	}{
		{"etcd addr without a port", map[string]string{"BACKEND_ETCD_ADDR": "etcd"}, "BACKEND_ETCD_ADDR", "etcd.addr"},
		{"agent port not a number", map[string]string{"BACKEND_AGENT_PORT": "http"}, "BACKEND_AGENT_PORT", "agent.rpc-listen-addr"},
		{"agent port out of range", map[string]string{"BACKEND_AGENT_PORT": "70000"}, "BACKEND_AGENT_PORT", "agent.rpc-listen-addr"},
		{"port range with one port", map[string]string{"BACKEND_CONTAINER_PORT_RANGE": "30000"}, "BACKEND_CONTAINER_PORT_RANGE", "container.port-range"},
		{"sandbox type unknown", map[string]string{"BACKEND_SANDBOX_TYPE": "gvisor"}, "BACKEND_SANDBOX_TYPE", "container.sandbox-type"},
		{"watcher port not a number", map[string]string{"BACKEND_WATCHER_SERVICE_PORT": "x"}, "BACKEND_WATCHER_SERVICE_PORT", "watcher.service-addr"},
		{"sandbox type jail refused", map[string]string{"BACKEND_SANDBOX_TYPE": "jail"}, "BACKEND_SANDBOX_TYPE", "container.sandbox-type"},
		{"cpu overcommit above upstream's 10", map[string]string{"BACKEND_CPU_OVERCOMMIT_FACTOR": "11"}, "BACKEND_CPU_OVERCOMMIT_FACTOR", "plugins.cpu.cpu-overcommit-factor"},
		{"cpu overcommit not whole", map[string]string{"BACKEND_CPU_OVERCOMMIT_FACTOR": "1.5"}, "BACKEND_CPU_OVERCOMMIT_FACTOR", "plugins.cpu.cpu-overcommit-factor"},
		{"mem overcommit zero", map[string]string{"BACKEND_MEM_OVERCOMMIT_FACTOR": "0"}, "BACKEND_MEM_OVERCOMMIT_FACTOR", "plugins.cpu.mem-overcommit-factor"},
	}
	for _, tc := range cases {
		problems := problemsOf(t, minimalTOML, testEnv(tc.vars))
		if len(problems) != 1 || problems[0].Env != tc.wantEnv || problems[0].Key != tc.wantKey {
			t.Errorf("%s: problems = %v, want one from %s on %s", tc.description, problems, tc.wantEnv, tc.wantKey)
			continue
		}
		if msg := problems[0].Error(); !strings.HasPrefix(msg, tc.wantEnv+" ("+tc.wantKey+"): ") {
			t.Errorf("%s: message %q does not lead with the variable and key", tc.description, msg)
		}
	}
}

func TestValidationErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		description string
		section     string
		lines       string
		wantKey     string
		wantMessage string
	}{
		{"bad binary size", "resource", `reserved-mem = "1Q"`, "resource.reserved-mem", `invalid binary size "1Q"`},
		{"negative binary size", "resource", `reserved-disk = "-1G"`, "resource.reserved-disk", "must not be negative"},
		{"binary size as float", "resource", `memory-align-size = 1.5`, "resource.memory-align-size", "binary size"},
		{"zero memory alignment", "resource", `memory-align-size = 0`, "resource.memory-align-size", "positive"},
		{"port range reversed", "container", `port-range = [31000, 30000]`, "container.port-range", "min 31000 > max 30000"},
		{"port range with three ports", "container", `port-range = [1, 2, 3]`, "container.port-range", "two ports"},
		{"port range beyond 65535", "container", `port-range = [30000, 70000]`, "container.port-range", "between 1 and 65535"},
		{"rpc-listen-addr without a port", "agent", `rpc-listen-addr = "0.0.0.0"`, "agent.rpc-listen-addr", "host:port"},
		{"rpc-listen-addr port zero", "agent", `rpc-listen-addr = "0.0.0.0:0"`, "agent.rpc-listen-addr", "between 1 and 65535"},
		{"rpc-listen-addr link-local", "agent", `rpc-listen-addr = "169.254.1.1:6001"`, "agent.rpc-listen-addr", "link-local"},
		{"rpc-listen-addr table missing port", "agent", `rpc-listen-addr = { host = "h" }`, "agent.rpc-listen-addr", `"host" and "port"`},
		{"advertised-rpc-addr bad", "agent", `advertised-rpc-addr = 5`, "agent.advertised-rpc-addr", "host:port"},
		{"unknown backend", "agent", `backend = "podman"`, "agent.backend", `"podman" is not one of docker|kubernetes|dummy`},
		{"kubernetes backend refused", "agent", `backend = "kubernetes"`, "agent.backend", `"kubernetes" is not supported by baiagent`},
		{"dummy backend refused", "agent", `backend = "dummy"`, "agent.backend", `"dummy" is not supported by baiagent`},
		{"TLS on the internal endpoint needs a key", "agent", "ssl-enabled = true\nssl-cert = \"a.crt\"", "agent.ssl-key", "required when ssl-enabled"},
		{"TLS on the internal endpoint needs a cert", "agent", "ssl-enabled = true\nssl-key = \"a.key\"", "agent.ssl-cert", "required when ssl-enabled"},
		{"agent-sock-port below 1024", "agent", `agent-sock-port = 80`, "agent.agent-sock-port", "between 1024 and 65535"},
		{"kernel-creation-concurrency above 32", "agent", `kernel-creation-concurrency = 33`, "agent.kernel-creation-concurrency", "between 1 and 32"},
		{"allow list of numbers", "agent", `allow-compute-plugins = [1]`, "agent.allow-compute-plugins[0]", "must be a string"},
		{"block list not a list", "agent", `block-compute-plugins = "cuda"`, "agent.block-compute-plugins", "array of strings"},
		{"bad checksum", "agent", `plugin-checksums = { cuda = "md5:abc" }`, "agent.plugin-checksums.cuda", "64 hex digits"},
		{"bad plugin start timeout", "agent", `plugin-start-timeout = "soon"`, "agent.plugin-start-timeout", "duration"},
		{"negative plugin start timeout", "agent", `plugin-start-timeout = "-1s"`, "agent.plugin-start-timeout", "positive"},
		{"empty plugin dir", "agent", `plugin-dirs = [""]`, "agent.plugin-dirs[0]", "must not be empty"},
		{"empty image-commit-path", "agent", `image-commit-path = ""`, "agent.image-commit-path", "must not be empty"},
		{"image-commit-path not a string", "agent", `image-commit-path = 3`, "agent.image-commit-path", "must be a string"},
		{"plugin runtime dir too long", "agent", `plugin-runtime-dir = "/` + strings.Repeat("x", 90) + `"`, "agent.plugin-runtime-dir", "unix limit"},
		{"scaling-group beside its new name", "agent", "scaling-group = \"a\"\ninitial-resource-group-name = \"b\"", "agent.scaling-group", "given together with initial-resource-group-name"},
		{"bad scaling-group-type", "agent", `scaling-group-type = "gpu"`, "agent.scaling-group-type", "compute|storage"},
		{"sync interval negative", "agent.sync-container-lifecycles", `interval = -1`, "agent.sync-container-lifecycles.interval", ">= 0"},
		{"sync enabled not a bool", "agent.sync-container-lifecycles", `enabled = "maybe"`, "agent.sync-container-lifecycles.enabled", "boolean"},
		{"metric interval zero", "agent.utilization-metric.node", `interval = 0`, "agent.utilization-metric.node.interval", "> 0"},
		{"path with ~ but no home", "agent", `mount-path = "~/mnt"`, "", ""},
		{"id not a string", "agent", `id = 5`, "agent.id", "must be a string"},
		{"kernel-uid unknown name", "container", `kernel-uid = "nobody-here"`, "container.kernel-uid", "cannot resolve"},
		{"kernel-gid below -1", "container", `kernel-gid = -2`, "container.kernel-gid", "not a valid id"},
		{"stats-type unknown", "container", `stats-type = "procfs"`, "container.stats-type", "docker|cgroup"},
		{"stats-type cgroup as non-root", "container", `stats-type = "cgroup"`, "container.stats-type", "root"},
		{"scratch-type hostfile as non-root", "container", "scratch-type = \"hostfile\"\nscratch-size = \"1G\"", "container.scratch-type", "needs the agent to run as root"},
		{"scratch-type k8s-nfs refused", "container", `scratch-type = "k8s-nfs"`, "container.scratch-type", `"k8s-nfs" is not supported by baiagent`},
		{"sandbox-type jail refused", "container", `sandbox-type = "jail"`, "container.sandbox-type", `"jail" (Backend.AI's ptrace syscall sandbox) is not supported`},
		{"container-logs chunk-size zero", "container-logs", `chunk-size = 0`, "container-logs.chunk-size", "positive"},
		{"allocation device slot name unquoted", "resource", "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 1\nmem = \"1G\"\ndevices = { cuda.device = 1 }", "resource.allocations.devices.cuda", `must be quoted: { "cuda.<name>" = ... }`},
		{"scratch-size bad", "container", `scratch-size = "lots"`, "container.scratch-size", "invalid binary size"},
		{"krunner-volumes not strings", "container", `krunner-volumes = { a = 1 }`, "container.krunner-volumes.a", "must be a string"},
		{"allocation-mode unknown", "resource", `allocation-mode = "greedy"`, "resource.allocation-mode", "shared|auto-split|manual"},
		{"manual mode without allocations", "resource", `allocation-mode = "manual"`, "resource.allocations", "required"},
		{"allocations not a table", "resource", `allocations = 1`, "resource.allocations", "must be a table"},
		{"allocations outside manual mode", "resource", "[resource.allocations]\ncpu = 1\nmem = \"1G\"", "resource.allocations", "only allowed"},
		{"allocations missing mem", "resource", "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 1", "resource.allocations.mem", "required"},
		{"allocation device negative", "resource", "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 1\nmem = \"1G\"\ndevices = { \"cuda.device\" = \"-1\" }", "resource.allocations.devices.cuda.device", "negative"},
		{"affinity policy unknown", "resource", `affinity-policy = "random"`, "resource.affinity-policy", "INTERLEAVED|PREFER_SINGLE_NODE"},
		{"reserved-cpu negative", "resource", `reserved-cpu = -1`, "resource.reserved-cpu", "between 0"},
		{"heartbeat-interval zero", "debug", `heartbeat-interval = 0`, "debug.heartbeat-interval", "> 0"},
		{"heartbeat-interval not a number", "debug", `heartbeat-interval = "often"`, "debug.heartbeat-interval", "seconds"},
		{"pull-timeout negative", "api", `pull-timeout = -1`, "api.pull-timeout", ">= 0"},
		{"pull-timeout not a number", "api", `pull-timeout = "forever"`, "api.pull-timeout", "seconds"},
		{"push-timeout negative", "api", `push-timeout = -5`, "api.push-timeout", ">= 0"},
		{"log level unknown", "logging", `level = "loud"`, "logging.level", "trace|debug|info"},
		{"log format unknown", "logging", `format = "xml"`, "logging.format", "console|json"},
		{"redis db negative", "redis", "addr = \"r:6379\"\ndb = -1", "redis.db", "between 0"},
		{"redis sentinel without service-name", "redis", `sentinel = "a:26379"`, "redis.service-name", "required beside sentinel"},
		{"redis sentinel item without port", "redis", "sentinel = \"a:26379,b\"\nservice-name = \"m\"", "redis.sentinel", "[1]"},
		{"redis sentinel not a list", "redis", "sentinel = 5\nservice-name = \"m\"", "redis.sentinel", "host:port"},
		{"redis use-tls not a bool", "redis", "addr = \"r:6379\"\nuse-tls = \"maybe\"", "redis.use-tls", "boolean"},
		{"redis request-timeout negative", "redis", "addr = \"r:6379\"\nrequest-timeout = -5", "redis.request-timeout", "between 0"},
		{"redis override without addr", "redis", "addr = \"r:6379\"\n[redis.override-configs.stream]\npassword = \"x\"", "redis.override-configs.stream.addr", "required"},
		{"redis override bad addr", "redis", "addr = \"r:6379\"\n[redis.override-configs.statistics]\naddr = \"nowhere\"", "redis.override-configs.statistics.addr", "host:port"},
		{"redis override not a table", "redis", "addr = \"r:6379\"\n[redis.override-configs]\nstream = \"r2:6379\"", "redis.override-configs.stream", "must be a table"},
		{"watcher service-addr bad", "watcher", `service-addr = "nowhere"`, "watcher.service-addr", "host:port"},
		{"etcd namespace empty", "etcd", `namespace = ""`, "etcd.namespace", "empty"},
		{"etcd addr empty list", "etcd", `addr = []`, "etcd.addr", "at least one"},
		{"embedded etcd with two addrs", "etcd", "embedded = true\naddr = [\"a:1\", \"b:2\"]", "etcd.addr", "exactly one"},
		{"embedded not a bool", "etcd", `embedded = "sure"`, "etcd.embedded", "boolean"},
		{"plugin config not a table", "plugins", `cuda = 1`, "plugins.cuda", "must be a table"},
		{"section not a table", "", `debug = 1`, "debug", "must be a table"},
		{"multi-agent mode", "", "[[agents]]\n[agents.agent]\nid = \"a\"", "agents", "not supported"},
		{"agents not a list", "", "agents = 1", "agents", "not supported"},
	}
	for _, tc := range cases {
		text := withSection(tc.section, tc.lines)
		if tc.section == "" {
			text = tc.lines + "\n" + minimalTOML
		}
		env := testEnv(nil)
		if tc.description == "path with ~ but no home" {
			env.HomeDir = ""
			tc.wantKey, tc.wantMessage = "agent.mount-path", "home directory unknown"
		}
		problems := problemsOf(t, text, env)
		if len(problems) != 1 {
			t.Errorf("%s: got %d problems %v, want exactly one", tc.description, len(problems), problems)
			continue
		}
		p := problems[0]
		if p.Key != tc.wantKey || !strings.Contains(p.Message, tc.wantMessage) {
			t.Errorf("%s: got %q, want key %q with message containing %q", tc.description, p.Error(), tc.wantKey, tc.wantMessage)
		}
		if !strings.HasPrefix(p.Error(), tc.wantKey+": ") {
			t.Errorf("%s: message %q does not lead with the key", tc.description, p.Error())
		}
	}
}

func TestRequiredSections(t *testing.T) {
	cases := []struct {
		description string
		text        string
		wantKeys    []string
	}{
		{"empty file", "", []string{"etcd", "agent", "container", "resource", "agent.backend"}},
		{"agent without backend", strings.Replace(minimalTOML, `backend = "docker"`, "", 1), []string{"agent.backend"}},
		{"no etcd section", strings.Replace(minimalTOML, "[etcd]\n", "", 1), []string{"etcd"}},
	}
	for _, tc := range cases {
		problems := problemsOf(t, tc.text, testEnv(nil))
		var keys []string
		for _, p := range problems {
			keys = append(keys, p.Key)
		}
		if !reflect.DeepEqual(keys, tc.wantKeys) {
			t.Errorf("%s: problem keys = %v, want %v", tc.description, keys, tc.wantKeys)
		}
	}
}

func TestEmbeddedEtcdNeedsNoAddr(t *testing.T) {
	cfg, _ := mustParse(t, withSection("etcd", "embedded = true"), testEnv(nil))
	cases := []struct {
		description string
		got, want   any
	}{
		{"embedded", cfg.Etcd.Embedded, true},
		{"listens on the default addr", cfg.Etcd.Addrs, []HostPort{{"127.0.0.1", 2379}}},
		{"data-dir under var-base-path", cfg.Etcd.DataDir, "/srv/cwd/var/lib/backend.ai/etcd"},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestAllProblemsAreReportedTogether(t *testing.T) {
	text := `
[etcd]
addr = "nope"
[agent]
backend = "docker"
agent-sock-port = 1
[container]
port-range = [2, 1]
[resource]
reserved-mem = "1Q"
`
	_, _, err := Parse([]byte(text), "/etc/backend.ai/agent.toml", testEnv(map[string]string{"BACKEND_AGENT_PORT": "x"}))
	var validationErr *ValidationError
	if !errors.As(err, &validationErr) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	want := []string{"etcd.addr", "agent.agent-sock-port", "agent.rpc-listen-addr", "resource.reserved-mem", "container.port-range"}
	if got := validationErr.Keys(); !reflect.DeepEqual(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	var problem *Problem
	if !errors.As(err, &problem) {
		t.Errorf("errors.As cannot reach a *Problem through %T", err)
	}
	for _, key := range want {
		if !strings.Contains(err.Error(), "\n  "+key) && !strings.Contains(err.Error(), "("+key+")") {
			t.Errorf("error text lacks %s:\n%v", key, err)
		}
	}
}

func TestSyntaxErrorHasPosition(t *testing.T) {
	cases := []struct {
		description string
		text        string
		wantLine    int
		wantColumn  int
	}{
		{"unterminated string", "[etcd]\nnamespace = \"local\n", 2, 19},
		{"duplicate key", "[etcd]\nnamespace = \"a\"\nnamespace = \"b\"\n", 3, 1},
		{"bad table header", "[etcd\n", 1, 6},
	}
	for _, tc := range cases {
		_, _, err := Parse([]byte(tc.text), "/etc/backend.ai/agent.toml", testEnv(nil))
		var syntaxErr *SyntaxError
		if !errors.As(err, &syntaxErr) {
			t.Errorf("%s: err = %v, want *SyntaxError", tc.description, err)
			continue
		}
		if syntaxErr.Line != tc.wantLine || syntaxErr.Column != tc.wantColumn {
			t.Errorf("%s: position %d:%d, want %d:%d (%v)", tc.description, syntaxErr.Line, syntaxErr.Column, tc.wantLine, tc.wantColumn, err)
		}
		prefix := "/etc/backend.ai/agent.toml:" + strconv.Itoa(tc.wantLine) + ":"
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s: message %q does not start with %q", tc.description, err.Error(), prefix)
		}
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	text := `
color = "blue"
[etcd]
[agent]
backend = "docker"
frobnicate = true
event-loop = "uvloop"
[agent.sync-container-lifecycles]
jitter = 1
[container]
swarm-enabled = true
[resource]
[logging]
drivers = ["console"]
[logging.console]
colored = true
[api]
pull-timeout = 100
commit-timeout = 60
[debug]
coredump = { enabled = true }
`
	_, warnings := mustParse(t, text, testEnv(nil))
	want := []Warning{
		{WarnUnknownKey, "agent.sync-container-lifecycles.jitter", ""},
		{WarnUnknownKey, "agent.frobnicate", ""},
		{WarnIgnoredKey, "container.swarm-enabled", ""},
		{WarnIgnoredKey, "debug.coredump", ""},
		{WarnIgnoredKey, "api.commit-timeout", ""},
		{WarnUnknownKey, "color", ""},
	}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings:\n got %v\nwant %v", warnings, want)
	}
}

// TestIgnoredKeysWarnOnlyWhenTheyMatter: an ignored key set to upstream's
// default or switched off costs nothing, so it earns no warning; Python
// runtime knobs have no counterpart and earn none either. Defaults from
// upstream's agent/config/unified.py (26.8.1).
func TestIgnoredKeysWarnOnlyWhenTheyMatter(t *testing.T) {
	cases := []struct {
		description string
		section     string
		lines       string
		want        []string
	}{
		{"ssl-enabled false", "agent", "ssl-enabled = false", nil},
		{"cohabiting-storage-proxy at its default", "agent", "cohabiting-storage-proxy = true", nil},
		{"cohabiting-storage-proxy off", "agent", "cohabiting-storage-proxy = false", nil},
		{"metadata-server-port at its default", "agent", "metadata-server-port = 40128", nil},
		{"metadata-server-port moved", "agent", "metadata-server-port = 40129", []string{"agent.metadata-server-port"}},
		{"announce-addr, the old name, at its default", "agent", `announce-addr = "host.docker.internal:6003"`, nil},
		{"announce-addr elsewhere is ignored, not unknown", "agent", `announce-addr = "10.0.0.1:6003"`, []string{"agent.announce-addr"}},
		{"aiomonitor-port, a Python runtime knob", "agent", "aiomonitor-port = 38201", nil},
		{"event-loop, a Python runtime knob", "agent", `event-loop = "uvloop"`, nil},
		{"jail-args empty", "container", "jail-args = []", nil},
		{"jail-args set", "container", `jail-args = ["-x"]`, []string{"container.jail-args"}},
		{"pyroscope disabled", "pyroscope", "enabled = false\napp-name = \"x\"", nil},
		{"pyroscope enabled", "pyroscope", "enabled = true", []string{"pyroscope"}},
		{"otel disabled", "otel", "enabled = false", nil},
		{"coredump disabled", "debug", "coredump = { enabled = false }", nil},
		{"file driver off: its table is inert", "logging", "drivers = [\"console\"]\n[logging.file]\npath = \"./logs\"", nil},
		{"file driver on", "logging", "drivers = [\"console\", \"file\"]\n[logging.file]\npath = \"./logs\"", []string{"logging.drivers", "logging.file"}},
		{"pkg-ns levels", "logging", "[logging.pkg-ns]\n\"\" = \"WARNING\"", nil},
	}
	for _, tc := range cases {
		_, warnings := mustParse(t, withSection(tc.section, tc.lines), testEnv(nil))
		var keys []string
		for _, w := range warnings {
			keys = append(keys, w.Key)
		}
		if !reflect.DeepEqual(keys, tc.want) {
			t.Errorf("%s: warnings %v, want keys %v", tc.description, warnings, tc.want)
		}
	}
}

// TestLogFileVariablesWarn: upstream's BACKEND_LOG_FILE* (logging/logger.py,
// 26.8.1) set the file driver's path, count and size; there is no file
// driver here, so each is named in a warning rather than dropped in silence.
func TestLogFileVariablesWarn(t *testing.T) {
	_, warnings := mustParse(t, minimalTOML, testEnv(map[string]string{"BACKEND_LOG_FILE": "/var/log/agent.log", "BACKEND_LOG_FILE_SIZE": "10"}))
	var got []string
	for _, w := range warnings {
		got = append(got, w.Key)
	}
	if want := []string{"BACKEND_LOG_FILE", "BACKEND_LOG_FILE_SIZE"}; !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %v, want keys %v", warnings, want)
	}
}

// TestScalingGroupIsTheOldName: the install guide's example and every file
// before 26.8 write scaling-group; it is taken with a deprecation warning.
func TestScalingGroupIsTheOldName(t *testing.T) {
	cfg, warnings := mustParse(t, withSection("agent", `scaling-group = "gpu-nodes"`), testEnv(nil))
	if cfg.Agent.InitialResourceGroupName != "gpu-nodes" {
		t.Errorf("initial resource group = %q", cfg.Agent.InitialResourceGroupName)
	}
	if len(warnings) != 1 || warnings[0].Kind != WarnDeprecatedKey ||
		!strings.Contains(warnings[0].String(), "agent.scaling-group: deprecated name of initial-resource-group-name") {
		t.Errorf("warnings = %v", warnings)
	}
}

func TestAllowBlockNullVersusEmpty(t *testing.T) {
	cases := []struct {
		description string
		lines       string
		wantAllow   []string
		wantBlock   []string
	}{
		{"absent lists stay nil (not set)", "", nil, nil},
		{"empty allow list is empty, not nil", "allow-compute-plugins = []", []string{}, nil},
		{"empty block list is empty, not nil", "block-compute-plugins = []", nil, []string{}},
		{"both set", "allow-compute-plugins = [\"cuda\"]\nblock-compute-plugins = [\"ai.backend.accelerator.mock\"]",
			[]string{"cuda"}, []string{"ai.backend.accelerator.mock"}},
	}
	for _, tc := range cases {
		cfg, _ := mustParse(t, withSection("agent", tc.lines), testEnv(nil))
		allow, block := cfg.Agent.AllowComputePlugins, cfg.Agent.BlockComputePlugins
		if (allow == nil) != (tc.wantAllow == nil) || !reflect.DeepEqual(allow, tc.wantAllow) {
			t.Errorf("%s: allow = %#v, want %#v", tc.description, allow, tc.wantAllow)
		}
		if (block == nil) != (tc.wantBlock == nil) || !reflect.DeepEqual(block, tc.wantBlock) {
			t.Errorf("%s: block = %#v, want %#v", tc.description, block, tc.wantBlock)
		}
		// The distinction must survive printing and reloading.
		out, err := cfg.EffectiveTOMLWithSecrets()
		if err != nil {
			t.Fatalf("%s: %v", tc.description, err)
		}
		again, _ := mustParse(t, string(out), testEnv(nil))
		if (again.Agent.AllowComputePlugins == nil) != (allow == nil) || (again.Agent.BlockComputePlugins == nil) != (block == nil) {
			t.Errorf("%s: null/empty lost in the printed config:\n%s", tc.description, out)
		}
	}
}

func TestRelativePathsResolveAgainstTheConfigFile(t *testing.T) {
	text := `
[etcd]
[agent]
backend = "docker"
plugin-dirs = ["../bin/plugins", "/abs", "~/plugins"]
var-base-path = "../var"
pid-file = "run/agent.pid"
image-commit-path = "../commit"
[container]
scratch-root = "../var/scratches"
[resource]
`
	cfg, warnings, err := Parse([]byte(text), "/repo/configs/agent.dev.toml", testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	inFileDir := testEnv(nil)
	inFileDir.WorkDir = "/repo/configs"
	_, warningsInFileDir, err := Parse([]byte(text), "/repo/configs/agent.dev.toml", inFileDir)
	if err != nil {
		t.Fatal(err)
	}
	note := Warning{Kind: WarnNote, Key: "agent.var-base-path, agent.pid-file, agent.image-commit-path, container.scratch-root",
		Message: "relative paths resolved against the config file's directory /repo/configs, not the working directory /srv/cwd as backend.ai-agent does"}
	cases := []struct {
		description string
		got, want   any
	}{
		{"a note names both directories and the upstream keys (plugin-dirs is ours)", warnings, []Warning{note}},
		{"no note when run in the file's directory, where both agree", len(warningsInFileDir), 0},
		{"plugin dirs: relative, absolute, home", cfg.Agent.PluginDirs, []string{"/repo/bin/plugins", "/abs", "/home/tester/plugins"}},
		{"var-base-path", cfg.Agent.VarBasePath, "/repo/var"},
		{"pid-file", cfg.Agent.PIDFile, "/repo/configs/run/agent.pid"},
		{"image-commit-path", cfg.Agent.ImageCommitPath, "/repo/commit"},
		{"scratch-root", cfg.Container.ScratchRoot, "/repo/var/scratches"},
		{"defaults stay relative to the working dir", cfg.Agent.IPCBasePath, "/tmp/backend.ai/ipc"},
		{"Dir() is the file's directory", cfg.Dir(), "/repo/configs"},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestLogLevelZerolog(t *testing.T) {
	cases := []struct {
		description string
		level       LogLevel
		want        zerolog.Level
	}{
		{"trace", LogTrace, zerolog.TraceLevel},
		{"notset passes everything", LogNotSet, zerolog.TraceLevel},
		{"debug", LogDebug, zerolog.DebugLevel},
		{"info", LogInfo, zerolog.InfoLevel},
		{"warning", LogWarning, zerolog.WarnLevel},
		{"error", LogError, zerolog.ErrorLevel},
		{"critical", LogCritical, zerolog.FatalLevel},
	}
	for _, tc := range cases {
		if got := tc.level.Zerolog(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.description, got, tc.want)
		}
	}
}

// TestRedisSentinelAndOverrides pins that [redis] expresses what etcd's
// config/redis can (upstream common/configs/redis.py RedisConfig).
func TestRedisSentinelAndOverrides(t *testing.T) {
	secret := "s-secret"
	cases := []struct {
		description string
		lines       string
		want        RedisConfig
	}{
		{
			"sentinel as a comma list with kebab keys",
			"sentinel = \"10.0.0.1:26379, 10.0.0.2:26379\"\nservice-name = \"mymaster\"\npassword = \"p\"\nsentinel-password = \"s-secret\"\nuse-tls = true\ntls-skip-verify = true\nrequest-timeout = 1500",
			RedisConfig{RedisTarget: RedisTarget{
				Sentinel:    []HostPort{{"10.0.0.1", 26379}, {"10.0.0.2", 26379}},
				ServiceName: "mymaster", Password: "p", SentinelPassword: &secret,
				UseTLS: true, TLSSkipVerify: true, RequestTimeout: 1500 * time.Millisecond,
			}},
		},
		{
			"sentinel as an array with snake keys",
			"sentinel = [\"a:1\", [\"b\", 2]]\nservice_name = \"m\"",
			RedisConfig{RedisTarget: RedisTarget{Sentinel: []HostPort{{"a", 1}, {"b", 2}}, ServiceName: "m"}},
		},
		{
			"per-role overrides are whole targets",
			"addr = \"r1:6379\"\npassword = \"p\"\n[redis.override-configs.statistics]\naddr = \"r2:6380\"\n[redis.override-configs.stream]\nsentinel = \"s:26379\"\nservice-name = \"m\"\nuse-tls = true",
			RedisConfig{
				RedisTarget: RedisTarget{Addr: HostPort{"r1", 6379}, Password: "p"},
				Overrides: map[string]RedisTarget{
					"statistics": {Addr: HostPort{"r2", 6380}},
					"stream":     {Sentinel: []HostPort{{"s", 26379}}, ServiceName: "m", UseTLS: true},
				},
			},
		},
	}
	for _, tc := range cases {
		cfg, _ := mustParse(t, withSection("redis", tc.lines), testEnv(nil))
		if cfg.Redis == nil || !reflect.DeepEqual(*cfg.Redis, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, cfg.Redis, tc.want)
		}
	}
}

// agent.region, else $BACKEND_REGION, else "local": upstream's on-premise
// get_instance_region (common/identity.py), applied when the key is empty
// (auto_detect_agent_network in agent/server.py).
func TestRegionDefault(t *testing.T) {
	cases := []struct {
		description string
		toml        string
		vars        map[string]string
		want        string
	}{
		{"neither key nor variable: local", minimalTOML, nil, "local"},
		{"BACKEND_REGION when the key is missing", minimalTOML, map[string]string{"BACKEND_REGION": "seoul-1"}, "seoul-1"},
		{"an empty BACKEND_REGION is no region", minimalTOML, map[string]string{"BACKEND_REGION": " "}, "local"},
		{"the key wins over the variable", strings.Replace(minimalTOML, "[agent]", "[agent]\nregion = \"us-east-1\"", 1), map[string]string{"BACKEND_REGION": "seoul-1"}, "us-east-1"},
		{"an empty key is no region", strings.Replace(minimalTOML, "[agent]", "[agent]\nregion = \"\"", 1), nil, "local"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			cfg, _ := mustParse(t, tc.toml, testEnv(tc.vars))
			if cfg.Agent.Region != tc.want {
				t.Errorf("region = %q, want %q", cfg.Agent.Region, tc.want)
			}
		})
	}
}

// TestAcceptedWhereUpstreamAccepts: values upstream's pydantic schema
// (agent/config/unified.py, common/configs/redis.py, 26.8.1) takes.
func TestAcceptedWhereUpstreamAccepts(t *testing.T) {
	cases := []struct {
		description string
		text        string
		check       func(*Config) bool
	}{
		{"agents = [] is one agent", "agents = []\n" + minimalTOML, func(c *Config) bool { return c.Agent.Backend == BackendDocker }},
		{"[redis] without addr waits for etcd", withSection("redis", `password = "x"`),
			func(c *Config) bool { return c.Redis != nil && c.Redis.Addr == (HostPort{}) && c.Redis.Password == "x" }},
		{"ssl-enabled with cert and key, relative to the file", withSection("agent", "ssl-enabled = true\nssl-cert = \"tls/agent.crt\"\nssl-key = \"tls/agent.key\""),
			func(c *Config) bool {
				return c.Agent.SSLEnabled && c.Agent.SSLCert == "/etc/backend.ai/tls/agent.crt" && c.Agent.SSLKey == "/etc/backend.ai/tls/agent.key"
			}},
		{"[redis] with sentinel only", withSection("redis", "sentinel = \"a:26379\"\nservice-name = \"m\""),
			func(c *Config) bool { return c.Redis != nil && len(c.Redis.Sentinel) == 1 }},
	}
	for _, tc := range cases {
		cfg, _ := mustParse(t, tc.text, testEnv(nil))
		if !tc.check(cfg) {
			t.Errorf("%s: got %+v", tc.description, cfg)
		}
		printed, err := cfg.EffectiveTOMLWithSecrets()
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := mustParse(t, string(printed), testEnv(nil)); !reflect.DeepEqual(cfg, again) {
			t.Errorf("%s: the printed config reloads differently", tc.description)
		}
	}
}
