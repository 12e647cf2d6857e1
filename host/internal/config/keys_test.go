package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// keyCase is one upstream agent.toml key: a non-default value for it and
// what baiagent does with that value.
type keyCase struct {
	key     string // dotted, as in upstream's AgentUnifiedConfig (agent/config/unified.py, 26.8.1)
	section string // where lines go ("" = top level, before minimalTOML)
	lines   string
	root    bool // parsed as the root user's (uid 0), not uid 1000
	// Exactly one of:
	effect  func(*Config) (got, want any) // honoured: the effective config shows it
	refused string                        // refused: the problem names key and reason
	ignored string                        // accepted with this warning key
	inert   bool                          // accepted, no effect needed, no warning
}

// upstreamKeys covers every key of upstream's AgentUnifiedConfig (26.8.1)
// and the environment variables of agent/server.py; README's configuration
// section lists the same classification.
func upstreamKeys() []keyCase {
	return []keyCase{
		// [etcd] (common/configs/etcd.py)
		{key: "etcd.namespace", section: "etcd", lines: `namespace = "ns"`, effect: func(c *Config) (any, any) { return c.Etcd.Namespace, "ns" }},
		{key: "etcd.addr", section: "etcd", lines: `addr = { host = "e", port = 2380 }`, effect: func(c *Config) (any, any) { return c.Etcd.Addrs, []HostPort{{"e", 2380}} }},
		{key: "etcd.user", section: "etcd", lines: `user = "u"`, effect: func(c *Config) (any, any) { return c.Etcd.User, "u" }},
		{key: "etcd.password", section: "etcd", lines: `password = "p"`, effect: func(c *Config) (any, any) { return c.Etcd.Password, "p" }},

		// [agent]
		{key: "agent.backend", section: "agent", lines: `backend = "kubernetes"`, refused: "agent.backend: \"kubernetes\" is not supported by baiagent"},
		{key: "agent.mode (backend's alias)", section: "agent", lines: `backend = "docker"`, effect: func(c *Config) (any, any) { return c.Agent.Backend, BackendDocker }},
		{key: "agent.rpc-listen-addr", section: "agent", lines: `rpc-listen-addr = "10.0.0.1:7001"`, effect: func(c *Config) (any, any) { return c.Agent.RPCListenAddr, HostPort{"10.0.0.1", 7001} }},
		{key: "agent.internal-addr", section: "agent", lines: `service-addr = "0.0.0.0:7003"`, effect: func(c *Config) (any, any) { return c.Agent.InternalAddr, HostPort{"0.0.0.0", 7003} }},
		{key: "agent.announce-internal-addr", section: "agent", lines: `announce-internal-addr = "10.0.0.1:6003"`, ignored: "agent.announce-internal-addr"},
		{key: "agent.announce-addr (old name)", section: "agent", lines: `announce-addr = "10.0.0.1:6003"`, ignored: "agent.announce-addr"},
		{key: "agent.ssl-enabled", section: "agent", lines: "ssl-enabled = true\nssl-cert = \"/tls/a.crt\"\nssl-key = \"/tls/a.key\"",
			effect: func(c *Config) (any, any) {
				return []any{c.Agent.SSLEnabled, c.Agent.SSLCert, c.Agent.SSLKey}, []any{true, "/tls/a.crt", "/tls/a.key"}
			}},
		{key: "agent.ssl-cert (without ssl-key)", section: "agent", lines: "ssl-enabled = true\nssl-cert = \"/tls/a.crt\"", refused: "agent.ssl-key: required when ssl-enabled"},
		{key: "agent.advertised-rpc-addr", section: "agent", lines: `advertised-rpc-addr = "203.0.113.1:16001"`, effect: func(c *Config) (any, any) { return *c.Agent.AdvertisedRPCAddr, HostPort{"203.0.113.1", 16001} }},
		{key: "agent.rpc-auth-manager-public-key", section: "agent", lines: `rpc-auth-manager-public-key = "/k/m.key"`, effect: func(c *Config) (any, any) { return c.Agent.RPCAuthManagerPublicKey, "/k/m.key" }},
		{key: "agent.rpc-auth-agent-keypair", section: "agent", lines: `rpc-auth-agent-keypair = "/k/a.key_secret"`, effect: func(c *Config) (any, any) { return c.Agent.RPCAuthAgentKeypair, "/k/a.key_secret" }},
		{key: "agent.ipc-base-path", section: "agent", lines: `ipc-base-path = "/run/ipc"`, effect: func(c *Config) (any, any) { return c.Agent.IPCBasePath, "/run/ipc" }},
		{key: "agent.var-base-path", section: "agent", lines: `var-base-path = "/var/lib/bai"`, effect: func(c *Config) (any, any) { return c.Agent.VarBasePath, "/var/lib/bai" }},
		{key: "agent.mount-path", section: "agent", lines: `mount-path = "/vfroot"`, inert: true},
		{key: "agent.cohabiting-storage-proxy", section: "agent", lines: `cohabiting-storage-proxy = false`, inert: true},
		{key: "agent.public-host", section: "agent", lines: `public-host = "node1.example.com"`, effect: func(c *Config) (any, any) { return c.Agent.PublicHost, "node1.example.com" }},
		{key: "agent.region", section: "agent", lines: `region = "eu"`, effect: func(c *Config) (any, any) { return c.Agent.Region, "eu" }},
		{key: "agent.instance-type", section: "agent", lines: `instance-type = "m5.large"`, inert: true},
		{key: "agent.pid-file", section: "agent", lines: `pid-file = "/run/agent.pid"`, effect: func(c *Config) (any, any) { return c.Agent.PIDFile, "/run/agent.pid" }},
		{key: "agent.event-loop", section: "agent", lines: `event-loop = "uvloop"`, inert: true},
		{key: "agent.skip-manager-detection", section: "agent", lines: `skip-manager-detection = true`, effect: func(c *Config) (any, any) { return c.Agent.SkipManagerDetection, true }},
		{key: "agent.aiomonitor-termui-port", section: "agent", lines: `aiomonitor-termui-port = 1`, inert: true},
		{key: "agent.aiomonitor-port (old name)", section: "agent", lines: `aiomonitor-port = 1`, inert: true},
		{key: "agent.aiomonitor-webui-port", section: "agent", lines: `aiomonitor-webui-port = 1`, inert: true},
		{key: "agent.metadata-server-bind-host", section: "agent", lines: `metadata-server-bind-host = "127.0.0.1"`, ignored: "agent.metadata-server-bind-host"},
		{key: "agent.metadata-server-port", section: "agent", lines: `metadata-server-port = 40200`, ignored: "agent.metadata-server-port"},
		{key: "agent.allow-compute-plugins", section: "agent", lines: `allow-compute-plugins = ["ai.backend.accelerator"]`, effect: func(c *Config) (any, any) { return c.Agent.AllowComputePlugins, []string{"ai.backend.accelerator"} }},
		{key: "agent.block-compute-plugins", section: "agent", lines: `block-compute-plugins = ["cuda"]`, effect: func(c *Config) (any, any) { return c.Agent.BlockComputePlugins, []string{"cuda"} }},
		{key: "agent.allow-network-plugins", section: "agent", lines: `allow-network-plugins = ["overlay"]`, ignored: "agent.allow-network-plugins"},
		{key: "agent.block-network-plugins", section: "agent", lines: `block-network-plugins = ["overlay"]`, ignored: "agent.block-network-plugins"},
		{key: "agent.image-commit-path", section: "agent", lines: `image-commit-path = "/commit"`, effect: func(c *Config) (any, any) { return c.Agent.ImageCommitPath, "/commit" }},
		{key: "agent.abuse-report-path", section: "agent", lines: `abuse-report-path = "/abuse"`, effect: func(c *Config) (any, any) { return c.Agent.AbuseReportPath, "/abuse" }},
		{key: "agent.use-experimental-redis-event-dispatcher", section: "agent", lines: `use-experimental-redis-event-dispatcher = true`, ignored: "agent.use-experimental-redis-event-dispatcher"},
		{key: "agent.docker-mode", section: "agent", lines: `docker-mode = "linuxkit"`, ignored: "agent.docker-mode"},
		{key: "agent.mount-path-uid-gid", section: "agent", lines: `mount-path-uid-gid = "1000:1000"`, ignored: "agent.mount-path-uid-gid"},
		{key: "agent.id", section: "agent", lines: `id = "i-x"`, effect: func(c *Config) (any, any) { return c.Agent.ID, "i-x" }},
		{key: "agent.agent-sock-port", section: "agent", lines: `agent-sock-port = 7007`, inert: true},
		{key: "agent.initial-resource-group-name", section: "agent", lines: `initial-resource-group-name = "gpu"`, effect: func(c *Config) (any, any) { return c.Agent.InitialResourceGroupName, "gpu" }},
		{key: "agent.scaling-group (old name)", section: "agent", lines: `scaling-group = "gpu"`, ignored: "agent.scaling-group"},
		{key: "agent.scaling-group-type", section: "agent", lines: `scaling-group-type = "storage"`, ignored: "agent.scaling-group-type"},
		{key: "agent.force-terminate-abusing-containers", section: "agent", lines: `force-terminate-abusing-containers = true`, effect: func(c *Config) (any, any) { return c.Agent.ForceTerminateAbusingContainers, true }},
		{key: "agent.kernel-creation-concurrency", section: "agent", lines: `kernel-creation-concurrency = 8`, effect: func(c *Config) (any, any) { return c.Agent.KernelCreationConcurrency, 8 }},
		{key: "agent.sync-container-lifecycles", section: "agent.sync-container-lifecycles", lines: "enabled = false\ninterval = 30",
			effect: func(c *Config) (any, any) {
				return c.Agent.SyncContainerLifecycles, SyncContainerLifecyclesConfig{false, 30 * time.Second}
			}},
		{key: "agent.utilization-metric", section: "agent.utilization-metric.node", lines: "enable = false\ninterval = 5",
			effect: func(c *Config) (any, any) {
				return c.Agent.UtilizationMetric.Node, MetricCollectionConfig{false, 5 * time.Second}
			}},

		// [container]
		{key: "container.bind-host", section: "container", lines: `kernel-host = "10.0.0.2"`, effect: func(c *Config) (any, any) { return c.Container.BindHost, "10.0.0.2" }},
		{key: "container.advertised-host", section: "container", lines: `advertised-host = "203.0.113.2"`, effect: func(c *Config) (any, any) { return c.Container.AdvertisedHost, "203.0.113.2" }},
		{key: "container.krunner-volumes", section: "container", lines: `krunner-volumes = { "ubuntu22.04" = "vol" }`, inert: true},
		{key: "container.kernel-uid", section: "container", lines: `kernel-uid = 1100`, effect: func(c *Config) (any, any) { return c.Container.KernelUID, 1100 }},
		{key: "container.kernel-gid", section: "container", lines: `kernel-gid = 1100`, effect: func(c *Config) (any, any) { return c.Container.KernelGID, 1100 }},
		{key: "container.port-range", section: "container", lines: `port-range = [40000, 40100]`, effect: func(c *Config) (any, any) { return c.Container.PortRange, PortRange{40000, 40100} }},
		{key: "container.port-reuse-cooldown-sec", section: "container", lines: `port-reuse-cooldown-sec = 5`, effect: func(c *Config) (any, any) { return c.Container.PortReuseCooldown, 5 * time.Second }},
		{key: "container.stats-type", section: "container", lines: `stats-type = "docker"`, inert: true},
		{key: "container.sandbox-type", section: "container", lines: `sandbox-type = "jail"`, refused: `container.sandbox-type: "jail" (Backend.AI's ptrace syscall sandbox) is not supported by baiagent`},
		{key: "container.jail-args", section: "container", lines: `jail-args = ["--x"]`, ignored: "container.jail-args"},
		{key: "container.scratch-type", section: "container", lines: `scratch-type = "memory"`, effect: func(c *Config) (any, any) { return c.Container.ScratchType, ScratchMemory }},
		{key: "container.scratch-type (hostfile)", section: "container", lines: "scratch-type = \"hostfile\"\nscratch-size = \"1G\"", root: true,
			effect: func(c *Config) (any, any) {
				return []any{c.Container.ScratchType, c.Container.ScratchSize}, []any{ScratchHostFile, ByteSize(1 << 30)}
			}},
		// config/unified.py _validate_scratch_type: hostfile needs root.
		{key: "container.scratch-type (hostfile, not root)", section: "container", lines: "scratch-type = \"hostfile\"\nscratch-size = \"1G\"", refused: "container.scratch-type: hostfile needs the agent to run as root"},
		// Upstream's truncate to 0 bytes makes mkfs.ext4 fail at each kernel.
		{key: "container.scratch-size (hostfile, 0)", section: "container", lines: `scratch-type = "hostfile"`, root: true, refused: "container.scratch-size: must be more than 0 with scratch-type hostfile"},
		{key: "container.scratch-root", section: "container", lines: `scratch-root = "/scratch"`, effect: func(c *Config) (any, any) { return c.Container.ScratchRoot, "/scratch" }},
		{key: "container.scratch-size", section: "container", lines: `scratch-size = "2G"`, effect: func(c *Config) (any, any) { return c.Container.ScratchSize, ByteSize(2 << 30) }},
		{key: "container.scratch-nfs-address", section: "container", lines: `scratch-nfs-address = "nfs:/x"`, ignored: "container.scratch-nfs-address"},
		{key: "container.scratch-nfs-options", section: "container", lines: `scratch-nfs-options = "ro"`, ignored: "container.scratch-nfs-options"},
		{key: "container.alternative-bridge", section: "container", lines: `alternative-bridge = "br1"`, ignored: "container.alternative-bridge"},
		{key: "container.swarm-enabled", section: "container", lines: `swarm-enabled = true`, ignored: "container.swarm-enabled"},

		// [resource]
		{key: "resource.reserved-cpu", section: "resource", lines: `reserved-cpu = 2`, effect: func(c *Config) (any, any) { return c.Resource.ReservedCPU, 2 }},
		{key: "resource.reserved-mem", section: "resource", lines: `reserved-mem = "2G"`, effect: func(c *Config) (any, any) { return c.Resource.ReservedMem, ByteSize(2 << 30) }},
		{key: "resource.reserved-disk", section: "resource", lines: `reserved-disk = "1G"`, effect: func(c *Config) (any, any) { return c.Resource.ReservedDisk, ByteSize(1 << 30) }},
		{key: "resource.allocation-mode", section: "resource", lines: "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 2\nmem = \"4G\"\ndevices = { \"cuda.device\" = 1 }",
			effect: func(c *Config) (any, any) {
				return []any{c.Resource.AllocationMode, c.Resource.Allocations.CPU, c.Resource.Allocations.Mem, c.Resource.Allocations.Devices["cuda.device"].String()},
					[]any{AllocationManual, 2, ByteSize(4 << 30), "1"}
			}},
		{key: "resource.allocations.devices (unquoted slot)", section: "resource", lines: "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 2\nmem = \"4G\"\ndevices = { cuda.device = 1 }",
			refused: `must be quoted`},
		{key: "resource.memory-align-size", section: "resource", lines: `memory-align-size = "32M"`, effect: func(c *Config) (any, any) { return c.Resource.MemoryAlignSize, ByteSize(32 << 20) }},
		{key: "resource.allocation-order", section: "resource", lines: `allocation-order = ["cpu", "mem"]`, effect: func(c *Config) (any, any) { return c.Resource.AllocationOrder, []string{"cpu", "mem"} }},
		{key: "resource.affinity-policy", section: "resource", lines: `affinity-policy = "PREFER_SINGLE_NODE"`, effect: func(c *Config) (any, any) { return c.Resource.AffinityPolicy, AffinityPreferSingleNode }},

		// [container-logs], [api], [kernel-lifecycles]
		{key: "container-logs.max-length", section: "container-logs", lines: `max-length = "1M"`, effect: func(c *Config) (any, any) { return c.ContainerLogs.MaxLength, ByteSize(1 << 20) }},
		{key: "container-logs.chunk-size", section: "container-logs", lines: `chunk-size = "32K"`, effect: func(c *Config) (any, any) { return c.ContainerLogs.ChunkSize, ByteSize(32 << 10) }},
		{key: "api.pull-timeout", section: "api", lines: `pull-timeout = 60`, effect: func(c *Config) (any, any) { return c.API.PullTimeout, time.Minute }},
		{key: "api.commit-timeout", section: "api", lines: `commit-timeout = 60`, ignored: "api.commit-timeout"},
		{key: "api.push-timeout", section: "api", lines: `push-timeout = 60`, effect: func(c *Config) (any, any) { return c.API.PushTimeout, time.Minute }},
		{key: "kernel-lifecycles", section: "kernel-lifecycles", lines: `init-timeout-sec = 30`, ignored: "kernel-lifecycles"},

		// [debug]
		{key: "debug.enabled", section: "debug", lines: `enabled = true`, effect: func(c *Config) (any, any) { return c.Debug.Enabled, true }},
		{key: "debug.asyncio", section: "debug", lines: `asyncio = true`, inert: true},
		{key: "debug.enhanced-aiomonitor-task-info", section: "debug", lines: `enhanced-aiomonitor-task-info = true`, inert: true},
		{key: "debug.kernel-runner", section: "debug", lines: `kernel-runner = true`, ignored: "debug.kernel-runner"},
		{key: "debug.skip-container-deletion", section: "debug", lines: `skip-container-deletion = true`, effect: func(c *Config) (any, any) { return c.Debug.SkipContainerDeletion, true }},
		{key: "debug.log-stats", section: "debug", lines: `log-stats = true`, ignored: "debug.log-stats"},
		{key: "debug.log-kernel-config", section: "debug", lines: `log-kernel-config = true`, ignored: "debug.log-kernel-config"},
		{key: "debug.log-alloc-map", section: "debug", lines: `log-alloc-map = true`, ignored: "debug.log-alloc-map"},
		{key: "debug.log-events", section: "debug", lines: `log-events = true`, ignored: "debug.log-events"},
		{key: "debug.log-heartbeats", section: "debug", lines: `log-heartbeats = true`, ignored: "debug.log-heartbeats"},
		{key: "debug.log-docker-events", section: "debug", lines: `log-docker-events = true`, ignored: "debug.log-docker-events"},
		{key: "debug.heartbeat-interval", section: "debug", lines: `heartbeat-interval = 5`, effect: func(c *Config) (any, any) { return c.Debug.HeartbeatInterval, 5 * time.Second }},
		{key: "debug.coredump", section: "debug", lines: `coredump = { enabled = true }`, ignored: "debug.coredump"},

		// [logging] (logging/config.py)
		{key: "logging.level", section: "logging", lines: `level = "DEBUG"`, effect: func(c *Config) (any, any) { return c.Logging.Level, LogDebug }},
		{key: "logging.drivers", section: "logging", lines: `drivers = ["console", "logstash"]`, ignored: "logging.drivers"},
		{key: "logging.pkg-ns", section: "logging", lines: `pkg-ns = { "aiohttp" = "DEBUG" }`, inert: true},
		{key: "logging.console", section: "logging", lines: `console = { colored = false }`, inert: true},
		{key: "logging.file", section: "logging", lines: "drivers = [\"file\"]\nfile = { path = \"./logs\" }", ignored: "logging.file"},
		{key: "logging.logstash", section: "logging", lines: "drivers = [\"logstash\"]\nlogstash = { protocol = \"tcp\" }", ignored: "logging.logstash"},
		{key: "logging.graylog", section: "logging", lines: "drivers = [\"graylog\"]\ngraylog = { port = 12201 }", ignored: "logging.graylog"},

		// [pyroscope], [otel], [service-discovery], [plugins], [redis], [watcher], agents
		{key: "pyroscope", section: "pyroscope", lines: `enabled = true`, ignored: "pyroscope"},
		{key: "otel", section: "otel", lines: `enabled = true`, ignored: "otel"},
		{key: "service-discovery", section: "service-discovery", lines: `type = "redis"`, ignored: "service-discovery"},
		{key: "plugins", section: "plugins.cuda", lines: `device-mask = ["0"]`, effect: func(c *Config) (any, any) { return c.Plugins["cuda"]["device-mask"], []any{"0"} }},
		{key: "redis.addr", section: "redis", lines: `addr = "r:6379"`, effect: func(c *Config) (any, any) { return c.Redis.Addr, HostPort{"r", 6379} }},
		{key: "redis.sentinel", section: "redis", lines: "sentinel = \"s:26379\"\nservice-name = \"m\"", effect: func(c *Config) (any, any) { return c.Redis.Sentinel, []HostPort{{"s", 26379}} }},
		{key: "redis.password", section: "redis", lines: `password = "pw"`, effect: func(c *Config) (any, any) { return c.Redis.Password, "pw" }},
		{key: "redis.use-tls", section: "redis", lines: "addr = \"r:6379\"\nuse-tls = true", effect: func(c *Config) (any, any) { return c.Redis.UseTLS, true }},
		{key: "redis.request-timeout", section: "redis", lines: "addr = \"r:6379\"\nrequest-timeout = 500", effect: func(c *Config) (any, any) { return c.Redis.RequestTimeout, 500 * time.Millisecond }},
		{key: "redis.override-configs", section: "redis", lines: "addr = \"r:6379\"\n[redis.override-configs.stream]\naddr = \"s:6379\"",
			effect: func(c *Config) (any, any) { return c.Redis.Overrides["stream"].Addr, HostPort{"s", 6379} }},
		{key: "watcher.service-addr", section: "watcher", lines: `service-addr = "127.0.0.1:6019"`, effect: func(c *Config) (any, any) { return c.Watcher.ServiceAddr, HostPort{"127.0.0.1", 6019} }},
		{key: "watcher.ssl-enabled", section: "watcher", lines: `ssl-enabled = true`, effect: func(c *Config) (any, any) { return c.Watcher.SSLEnabled, true }},
		{key: "watcher.target-service", section: "watcher", lines: `target-service = "x.service"`, effect: func(c *Config) (any, any) { return c.Watcher.TargetService, "x.service" }},
		{key: "watcher.soft-reset-available", section: "watcher", lines: `soft-reset-available = true`, effect: func(c *Config) (any, any) { return c.Watcher.SoftResetAvailable, true }},
		{key: "agents (empty)", section: "", lines: `agents = []`, inert: true},
		{key: "agents", section: "", lines: "[[agents]]\n[agents.agent]\nid = \"a\"", refused: "agents: multi-agent mode"},
	}
}

// TestEveryUpstreamKey: each upstream key, set away from its default, is
// honoured (the effective config shows it), refused with a message naming
// the key and why, ignored with a warning naming it, or inert (no effect
// needed: a Python runtime knob).
func TestEveryUpstreamKey(t *testing.T) {
	for _, tc := range upstreamKeys() {
		text := withSection(tc.section, tc.lines)
		if tc.section == "" {
			text = tc.lines + "\n" + minimalTOML
		}
		env := testEnv(nil)
		if tc.root {
			env.UID = 0
		}
		cfg, warnings, err := Parse([]byte(text), "/etc/backend.ai/agent.toml", env)
		var keys []string
		for _, w := range warnings {
			keys = append(keys, w.Key)
		}
		switch {
		case tc.refused != "":
			var verr *ValidationError
			if !errors.As(err, &verr) || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("%s: err = %v, want a refusal containing %q", tc.key, err, tc.refused)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v", tc.key, err)
			continue
		case tc.ignored != "":
			if !strings.Contains(strings.Join(keys, " "), tc.ignored) {
				t.Errorf("%s: warnings %v, want one naming %s", tc.key, warnings, tc.ignored)
			}
			continue
		}
		if len(warnings) != 0 {
			t.Errorf("%s: unexpected warnings %v", tc.key, warnings)
		}
		if tc.effect != nil {
			if got, want := tc.effect(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %#v, want %#v", tc.key, got, want)
			}
		}
	}
}

// TestEveryUpstreamEnvVariable: agent/server.py's overrides (and the
// intrinsic plugin's and logger's variables) each take effect or are named.
func TestEveryUpstreamEnvVariable(t *testing.T) {
	cases := []struct {
		env, value string
		effect     func(*Config) (any, any)
		refused    string
		ignored    bool
	}{
		{env: "BACKEND_NAMESPACE", value: "ns", effect: func(c *Config) (any, any) { return c.Etcd.Namespace, "ns" }},
		{env: "BACKEND_ETCD_ADDR", value: "e:1", effect: func(c *Config) (any, any) { return c.Etcd.Addrs, []HostPort{{"e", 1}} }},
		{env: "BACKEND_ETCD_USER", value: "u", effect: func(c *Config) (any, any) { return c.Etcd.User, "u" }},
		{env: "BACKEND_ETCD_PASSWORD", value: "p", effect: func(c *Config) (any, any) { return c.Etcd.Password, "p" }},
		{env: "BACKEND_AGENT_HOST_OVERRIDE", value: "10.1.1.1", effect: func(c *Config) (any, any) { return c.Agent.RPCListenAddr.Host, "10.1.1.1" }},
		{env: "BACKEND_AGENT_PORT", value: "7001", effect: func(c *Config) (any, any) { return c.Agent.RPCListenAddr.Port, 7001 }},
		{env: "BACKEND_PID_FILE", value: "/run/a.pid", effect: func(c *Config) (any, any) { return c.Agent.PIDFile, "/run/a.pid" }},
		{env: "BACKEND_CONTAINER_PORT_RANGE", value: "40000-40010", effect: func(c *Config) (any, any) { return c.Container.PortRange, PortRange{40000, 40010} }},
		{env: "BACKEND_BIND_HOST_OVERRIDE", value: "10.2.2.2", effect: func(c *Config) (any, any) { return c.Container.BindHost, "10.2.2.2" }},
		{env: "BACKEND_SANDBOX_TYPE", value: "jail", refused: "BACKEND_SANDBOX_TYPE (container.sandbox-type): \"jail\""},
		{env: "BACKEND_SCRATCH_ROOT", value: "/s", effect: func(c *Config) (any, any) { return c.Container.ScratchRoot, "/s" }},
		{env: "BACKEND_REGION", value: "eu", effect: func(c *Config) (any, any) { return c.Agent.Region, "eu" }},
		{env: "BACKEND_CPU_OVERCOMMIT_FACTOR", value: "4", effect: func(c *Config) (any, any) { return c.Plugins["cpu"]["cpu-overcommit-factor"], int64(4) }},
		{env: "BACKEND_MEM_OVERCOMMIT_FACTOR", value: "2", effect: func(c *Config) (any, any) { return c.Plugins["cpu"]["mem-overcommit-factor"], int64(2) }},
		{env: "BACKEND_LOG_FILE", value: "/var/log/a.log", ignored: true},
		{env: "BACKEND_LOG_FILE_COUNT", value: "3", ignored: true},
		{env: "BACKEND_LOG_FILE_SIZE", value: "10", ignored: true},
		{env: "BACKEND_WATCHER_SERVICE_IP", value: "127.0.0.2", effect: func(c *Config) (any, any) { return c.Watcher.ServiceAddr.Host, "127.0.0.2" }},
		{env: "BACKEND_WATCHER_SERVICE_PORT", value: "6099", effect: func(c *Config) (any, any) { return c.Watcher.ServiceAddr.Port, 6099 }},
	}
	for _, tc := range cases {
		cfg, warnings, err := Parse([]byte(minimalTOML), "/etc/backend.ai/agent.toml", testEnv(map[string]string{tc.env: tc.value}))
		switch {
		case tc.refused != "":
			if err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("%s: err = %v, want %q", tc.env, err, tc.refused)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.env, err)
		case tc.ignored:
			if len(warnings) != 1 || warnings[0].Key != tc.env {
				t.Errorf("%s: warnings %v, want one naming it", tc.env, warnings)
			}
		default:
			if got, want := tc.effect(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %#v, want %#v", tc.env, got, want)
			}
		}
	}
}
