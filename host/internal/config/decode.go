package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Environment variables that override agent.toml, as in upstream's
// agent/server.py and agent/watcher/__init__.py.
const (
	EnvConfigFile         = "BACKEND_CONFIG_FILE"
	EnvNamespace          = "BACKEND_NAMESPACE"
	EnvEtcdAddr           = "BACKEND_ETCD_ADDR"
	EnvEtcdUser           = "BACKEND_ETCD_USER"
	EnvEtcdPassword       = "BACKEND_ETCD_PASSWORD"
	EnvAgentHost          = "BACKEND_AGENT_HOST_OVERRIDE"
	EnvAgentPort          = "BACKEND_AGENT_PORT"
	EnvPIDFile            = "BACKEND_PID_FILE"
	EnvContainerPortRange = "BACKEND_CONTAINER_PORT_RANGE"
	EnvBindHost           = "BACKEND_BIND_HOST_OVERRIDE"
	EnvSandboxType        = "BACKEND_SANDBOX_TYPE"
	EnvScratchRoot        = "BACKEND_SCRATCH_ROOT"
	// EnvRegion is read when agent.region is empty (common/identity.py).
	EnvRegion = "BACKEND_REGION"
	// The overcommit factors are read by upstream's intrinsic cpu/mem
	// plugin (agent/docker/intrinsic.py); here they become [plugins.cpu] keys.
	EnvCPUOvercommit    = "BACKEND_CPU_OVERCOMMIT_FACTOR"
	EnvMemOvercommit    = "BACKEND_MEM_OVERCOMMIT_FACTOR"
	EnvWatcherServiceIP = "BACKEND_WATCHER_SERVICE_IP"
	// The legacy log file variables: warned about, as the file driver is.
	EnvLogFile            = "BACKEND_LOG_FILE"
	EnvLogFileCount       = "BACKEND_LOG_FILE_COUNT"
	EnvLogFileSize        = "BACKEND_LOG_FILE_SIZE"
	EnvWatcherServicePort = "BACKEND_WATCHER_SERVICE_PORT"
	// EnvXDGRuntimeDir picks the plugin runtime dir of a non-root agent.
	EnvXDGRuntimeDir = "XDG_RUNTIME_DIR"
)

// EnvOverride names a variable and the key it overrides.
type EnvOverride struct {
	Env string
	Key string
}

// EnvOverrides lists the overriding variables in the order they are applied.
func EnvOverrides() []EnvOverride {
	return []EnvOverride{
		{EnvNamespace, "etcd.namespace"},
		{EnvEtcdAddr, "etcd.addr"},
		{EnvEtcdUser, "etcd.user"},
		{EnvEtcdPassword, "etcd.password"},
		{EnvAgentHost, "agent.rpc-listen-addr.host"},
		{EnvAgentPort, "agent.rpc-listen-addr.port"},
		{EnvPIDFile, "agent.pid-file"},
		{EnvContainerPortRange, "container.port-range"},
		{EnvBindHost, "container.bind-host"},
		{EnvSandboxType, "container.sandbox-type"},
		{EnvScratchRoot, "container.scratch-root"},
		{EnvCPUOvercommit, "plugins.cpu.cpu-overcommit-factor"},
		{EnvMemOvercommit, "plugins.cpu.mem-overcommit-factor"},
		{EnvWatcherServiceIP, "watcher.service-addr.host"},
		{EnvWatcherServicePort, "watcher.service-addr.port"},
	}
}

// sectionOverriddenByEnv says whether an environment variable writes into
// section; upstream then creates the section, so it is no longer missing.
func (d *decoder) sectionOverriddenByEnv(section string) bool {
	for _, o := range EnvOverrides() {
		if strings.HasPrefix(o.Key, section+".") {
			if _, set := d.env.Value(o.Env); set {
				return true
			}
		}
	}
	return false
}

func (d *decoder) decodeRoot(root *table, cfg *Config) {
	for _, section := range []string{"etcd", "agent", "container", "resource"} {
		if !root.has(section) && !d.sectionOverriddenByEnv(section) {
			d.fail(section, "required section [%s] is missing", section)
		}
	}
	// agents = [] is upstream's default: one agent, configured above.
	if raw, written, found := root.lookup("agents"); found {
		if items, isList := raw.([]any); !isList || len(items) > 0 {
			root.fail(written, "multi-agent mode ([[agents]]) is not supported by baiagent; run one agent per config")
		}
	}
	root.ignore("kernel-lifecycles", "otel", "pyroscope", "service-discovery")

	d.decodeEtcd(root.child("etcd"), &cfg.Etcd)
	d.decodeAgent(root.child("agent"), &cfg.Agent)
	d.decodeContainer(root.child("container"), &cfg.Container)
	d.decodeResource(root.child("resource"), &cfg.Resource)
	d.decodeContainerLogs(root.child("container-logs"), &cfg.ContainerLogs)
	d.decodeDebug(root.child("debug"), &cfg.Debug)
	d.decodeAPI(root.child("api"), &cfg.API)
	d.decodeLogging(root.child("logging"), &cfg.Logging)
	if root.has("redis") {
		cfg.Redis = &RedisConfig{}
		d.decodeRedis(root.child("redis"), cfg.Redis)
	}
	d.decodeWatcher(root.child("watcher"), &cfg.Watcher)
	d.decodePlugins(root.child("plugins"), cfg.Plugins)
	d.overcommitFromEnv(cfg.Plugins)
	root.finish()
}

func (d *decoder) decodeEtcd(t *table, etcd *EtcdConfig) {
	t.str("namespace", &etcd.Namespace)
	if raw, written, found := t.lookup("addr"); found {
		if addrs, err := parseEtcdAddrs(raw); err != nil {
			t.fail(written, "%v", err)
		} else {
			etcd.Addrs = addrs
		}
	}
	t.str("user", &etcd.User)
	t.str("password", &etcd.Password)
	t.boolean("embedded", &etcd.Embedded)
	t.filePath("data-dir", &etcd.DataDir)
	t.filePath("embedded-executable", &etcd.EmbeddedExecutable)
	t.finish()

	if v, set := d.env.Value(EnvNamespace); set {
		etcd.Namespace = v
	}
	if v, set := d.env.Value(EnvEtcdAddr); set {
		var addrs []HostPort
		for _, item := range strings.Split(v, ",") {
			hp, err := ParseHostPort(strings.TrimSpace(item))
			if err != nil {
				d.failEnv(EnvEtcdAddr, "etcd.addr", "%v", err)
				addrs = nil
				break
			}
			addrs = append(addrs, hp)
		}
		if addrs != nil {
			etcd.Addrs = addrs
		}
	}
	if v, set := d.env.Value(EnvEtcdUser); set {
		etcd.User = v
	}
	if v, set := d.env.Value(EnvEtcdPassword); set {
		etcd.Password = v
	}
}

// parseEtcdAddrs reads etcd.addr: one HostPortPair, or an array of them.
// An array of two items whose second is a port number is one [host, port] pair.
func parseEtcdAddrs(raw any) ([]HostPort, error) {
	items, isArray := raw.([]any)
	if !isArray || isHostPortArray(items) {
		hp, err := ParseHostPort(raw)
		if err != nil {
			return nil, err
		}
		return []HostPort{hp}, nil
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("must name at least one endpoint")
	}
	addrs := make([]HostPort, 0, len(items))
	for i, item := range items {
		hp, err := ParseHostPort(item)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		addrs = append(addrs, hp)
	}
	return addrs, nil
}

func isHostPortArray(items []any) bool {
	if len(items) != 2 {
		return false
	}
	if _, ok := items[0].(string); !ok {
		return false
	}
	switch port := items[1].(type) {
	case int64:
		return true
	case string:
		_, err := strconv.Atoi(port)
		return err == nil
	}
	return false
}

func (d *decoder) decodeAgent(t *table, agent *AgentConfig) {
	backends := []Backend{BackendDocker, BackendKubernetes, BackendDummy}
	var backend string
	if _, written, found := t.lookup("backend", "mode"); !found {
		d.fail("agent.backend", "required: one of %s", joinEnum(backends))
	} else if t.str("backend", &backend, "mode") {
		switch v, ok := parseEnum(backend, nil, backends...); {
		case !ok:
			t.fail(written, "%q is not one of %s", backend, joinEnum(backends))
		case v != BackendDocker:
			t.fail(written, "%q is not supported by baiagent, which runs kernels only as Docker containers; use \"docker\"", backend)
		default:
			agent.Backend = v
		}
	}
	t.hostPort("rpc-listen-addr", &agent.RPCListenAddr)
	if raw, written, found := t.lookup("advertised-rpc-addr"); found {
		if advertised, err := ParseHostPort(raw); err != nil {
			t.fail(written, "%v", err)
		} else {
			agent.AdvertisedRPCAddr = &advertised
		}
	}
	t.hostPort("internal-addr", &agent.InternalAddr, "service-addr")
	t.filePath("rpc-auth-manager-public-key", &agent.RPCAuthManagerPublicKey)
	t.filePath("rpc-auth-agent-keypair", &agent.RPCAuthAgentKeypair)
	t.filePath("ipc-base-path", &agent.IPCBasePath)
	t.filePath("var-base-path", &agent.VarBasePath)
	t.filePath("mount-path", &agent.MountPath)
	t.filePath("abuse-report-path", &agent.AbuseReportPath)
	t.filePath("pid-file", &agent.PIDFile)
	if raw, written, found := t.lookup("image-commit-path"); found && raw == "" {
		t.fail(written, "must not be empty: commits save images under it")
	}
	t.filePath("image-commit-path", &agent.ImageCommitPath)
	t.str("id", &agent.ID)
	t.str("region", &agent.Region)
	t.str("instance-type", &agent.InstanceType)
	t.str("public-host", &agent.PublicHost)
	d.decodeResourceGroupName(t, agent)
	enumValue(t, "scaling-group-type", &agent.ScalingGroupType, strings.ToLower, ResourceGroupCompute, ResourceGroupStorage)
	t.boolean("skip-manager-detection", &agent.SkipManagerDetection)
	t.stringList("allow-compute-plugins", &agent.AllowComputePlugins)
	t.stringList("block-compute-plugins", &agent.BlockComputePlugins)
	t.integer("agent-sock-port", &agent.AgentSockPort, 1024, 65535)
	t.integer("kernel-creation-concurrency", &agent.KernelCreationConcurrency, 1, 32)
	t.boolean("force-terminate-abusing-containers", &agent.ForceTerminateAbusingContainers)

	sync := t.child("sync-container-lifecycles")
	sync.boolean("enabled", &agent.SyncContainerLifecycles.Enabled)
	sync.seconds("interval", &agent.SyncContainerLifecycles.Interval, true)
	sync.finish()

	metrics := t.child("utilization-metric")
	for _, scope := range []struct {
		name string
		dst  *MetricCollectionConfig
	}{
		{"node", &agent.UtilizationMetric.Node},
		{"container", &agent.UtilizationMetric.Container},
		{"process", &agent.UtilizationMetric.Process},
	} {
		m := metrics.child(scope.name)
		m.boolean("enable", &scope.dst.Enable)
		m.seconds("interval", &scope.dst.Interval, false)
		m.finish()
	}
	metrics.finish()

	d.decodePluginKeys(t, agent)

	t.boolean("ssl-enabled", &agent.SSLEnabled)
	t.filePath("ssl-cert", &agent.SSLCert)
	t.filePath("ssl-key", &agent.SSLKey)
	if agent.SSLEnabled {
		for _, f := range []struct{ key, path string }{{"ssl-cert", agent.SSLCert}, {"ssl-key", agent.SSLKey}} {
			if f.path == "" {
				t.fail(f.key, "required when ssl-enabled is true (a PEM file for the internal endpoint's TLS)")
			}
		}
	}
	// announce-addr and aiomonitor-port are upstream's older names.
	for _, key := range []string{"announce-internal-addr", "announce-addr"} {
		t.ignoreDefault(key, "host.docker.internal:6003")
	}
	t.ignoreDefault("cohabiting-storage-proxy", true)
	t.ignoreDefault("metadata-server-bind-host", "0.0.0.0")
	t.ignoreDefault("metadata-server-port", 40128)
	t.ignore("allow-network-plugins", "block-network-plugins", "docker-mode", "mount-path-uid-gid",
		"use-experimental-redis-event-dispatcher")
	// The Python runtime's own knobs: no counterpart here, nothing to warn about.
	t.accept("event-loop", "aiomonitor-termui-port", "aiomonitor-port", "aiomonitor-webui-port")
	t.finish()

	if host, set := d.env.Value(EnvAgentHost); set {
		agent.RPCListenAddr.Host = normalizeHost(host)
	}
	if v, set := d.env.Value(EnvAgentPort); set {
		if port, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || port < 1 || port > 65535 {
			d.failEnv(EnvAgentPort, "agent.rpc-listen-addr", "invalid port %q: must be 1-65535", v)
		} else {
			agent.RPCListenAddr.Port = port
		}
	}
	if v, set := d.env.Value(EnvPIDFile); set {
		d.envPath(EnvPIDFile, "agent.pid-file", v, &agent.PIDFile)
	}
	if addr, err := netip.ParseAddr(agent.RPCListenAddr.Host); err == nil && addr.IsLinkLocalUnicast() {
		d.fail("agent.rpc-listen-addr", "cannot listen on the link-local address %s", addr)
	}
}

// decodeResourceGroupName reads initial-resource-group-name, or scaling-group,
// its name before 26.8 (what the install guide and every older file write)
// with a deprecation warning. Upstream 26.8 refuses the old name
// (OverridableAgentConfig._reject_removed_scaling_group_key); baiagent takes
// it so the file an operator copies from the guide starts.
func (d *decoder) decodeResourceGroupName(t *table, agent *AgentConfig) {
	_, newName, hasNew := t.lookup("initial-resource-group-name")
	_, oldName, hasOld := t.lookup("scaling-group")
	switch {
	case hasNew && hasOld:
		t.fail(oldName, "given together with %s; keep only %s (scaling-group is its old name)", newName, newName)
	case hasOld:
		t.str("scaling-group", &agent.InitialResourceGroupName)
		d.warnings = append(d.warnings, Warning{Kind: WarnDeprecatedKey, Key: t.keyPath(oldName),
			Message: "deprecated name of initial-resource-group-name (backend.ai-agent 26.8 refuses it); rename the key"})
	default:
		t.str("initial-resource-group-name", &agent.InitialResourceGroupName)
	}
}

// isSHA256Checksum says whether sum is "sha256:" and 64 lower-case hex digits.
func isSHA256Checksum(sum string) bool {
	digest, ok := strings.CutPrefix(sum, "sha256:")
	if !ok || len(digest) != 64 {
		return false
	}
	for _, c := range digest {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (d *decoder) decodePluginKeys(t *table, agent *AgentConfig) {
	if present := t.stringList("plugin-dirs", &agent.PluginDirs); present {
		_, written, _ := t.lookup("plugin-dirs")
		for i, dir := range agent.PluginDirs {
			if dir == "" {
				t.fail(fmt.Sprintf("%s[%d]", written, i), "must not be empty")
				continue
			}
			resolved, err := d.resolvePath(dir, d.fileDir)
			if err != nil {
				t.fail(fmt.Sprintf("%s[%d]", written, i), "%v", err)
				continue
			}
			agent.PluginDirs[i] = resolved
		}
	}
	var checksums map[string]string
	t.stringMap("plugin-checksums", &checksums)
	if checksums != nil {
		_, written, _ := t.lookup("plugin-checksums")
		agent.PluginChecksums = make(map[string]string, len(checksums))
		for _, name := range sortedKeys(checksums) {
			sum := checksums[name]
			normalized := strings.ToLower(strings.TrimSpace(sum))
			if !strings.HasPrefix(normalized, "sha256:") {
				normalized = "sha256:" + normalized // bare hex is accepted too
			}
			if !isSHA256Checksum(normalized) {
				t.fail(written+"."+name, "%q must be \"sha256:\" followed by 64 hex digits", sum)
				continue
			}
			agent.PluginChecksums[name] = normalized
		}
	}
	t.duration("plugin-start-timeout", &agent.PluginStartTimeout)
	t.filePath("plugin-runtime-dir", &agent.PluginRuntimeDir)
	t.filePath("kernel-runner-path", &agent.KernelRunnerPath)
}

// envPath resolves a path from the environment against the working directory.
func (d *decoder) envPath(envName, key, value string, dst *string) {
	resolved, err := d.resolvePath(value, d.env.WorkDir)
	if err != nil {
		d.failEnv(envName, key, "%v", err)
		return
	}
	*dst = resolved
}

func (d *decoder) decodeContainer(t *table, c *ContainerConfig) {
	t.str("bind-host", &c.BindHost, "kernel-host")
	t.str("advertised-host", &c.AdvertisedHost)
	d.decodeUserID(t, "kernel-uid", &c.KernelUID, d.env.LookupUserID)
	d.decodeUserID(t, "kernel-gid", &c.KernelGID, d.env.LookupGroupID)
	if raw, written, found := t.lookup("port-range"); found {
		if r, err := portRangeValue(raw); err != nil {
			t.fail(written, "%v", err)
		} else {
			c.PortRange = r
		}
	}
	cooldownSeconds := int(c.PortReuseCooldown / time.Second)
	t.integer("port-reuse-cooldown-sec", &cooldownSeconds, 0, 24*3600)
	c.PortReuseCooldown = time.Duration(cooldownSeconds) * time.Second
	enumValue(t, "stats-type", &c.StatsType, nil, StatsDocker, StatsCgroup)
	enumValue(t, "sandbox-type", &c.SandboxType, nil, SandboxDocker, SandboxJail)
	if c.SandboxType == SandboxJail {
		_, written, _ := t.lookup("sandbox-type")
		t.fail(written, "%s", jailRefusal)
	}
	enumValue(t, "scratch-type", &c.ScratchType, nil, ScratchHostDir, ScratchHostFile, ScratchMemory, ScratchK8sNFS)
	if c.ScratchType == ScratchK8sNFS {
		_, written, _ := t.lookup("scratch-type")
		t.fail(written, "%q is not supported by baiagent, which keeps scratch dirs on the host (hostdir, hostfile) or in memory", c.ScratchType)
	}
	t.filePath("scratch-root", &c.ScratchRoot)
	t.byteSize("scratch-size", &c.ScratchSize)
	t.stringMap("krunner-volumes", &c.KrunnerVolumes)
	t.ignore("jail-args", "scratch-nfs-address", "scratch-nfs-options", "alternative-bridge", "swarm-enabled")
	t.ignoreUnless("jail-args", func(v any) bool { items, ok := v.([]any); return ok && len(items) == 0 })
	t.finish()

	if v, set := d.env.Value(EnvContainerPortRange); set {
		if r, err := ParsePortRange(v); err != nil {
			d.failEnv(EnvContainerPortRange, "container.port-range", "%v", err)
		} else {
			c.PortRange = r
		}
	}
	if v, set := d.env.Value(EnvBindHost); set {
		c.BindHost = v
	}
	if v, set := d.env.Value(EnvSandboxType); set {
		if sandbox, ok := parseEnum(v, nil, SandboxDocker, SandboxJail); ok {
			c.SandboxType = sandbox
			if sandbox == SandboxJail {
				d.failEnv(EnvSandboxType, "container.sandbox-type", "%s", jailRefusal)
			}
		} else {
			d.failEnv(EnvSandboxType, "container.sandbox-type", "%q is not one of docker|jail", v)
		}
	}
	if v, set := d.env.Value(EnvScratchRoot); set {
		d.envPath(EnvScratchRoot, "container.scratch-root", v, &c.ScratchRoot)
	}
}

// jailRefusal says why sandbox-type = "jail" cannot be honoured.
const jailRefusal = `"jail" (Backend.AI's ptrace syscall sandbox) is not supported by baiagent; kernels run in plain Docker containers; use "docker"`

func portRangeValue(raw any) (PortRange, error) {
	items, ok := raw.([]any)
	if !ok || len(items) != 2 {
		return PortRange{}, fmt.Errorf("must be an array of two ports [min, max], got %s", describe(raw))
	}
	var ports [2]int
	for i, item := range items {
		port, err := toInt(item)
		if err != nil {
			return PortRange{}, fmt.Errorf("[%d]: %w", i, err)
		}
		ports[i] = port
	}
	return PortRange{Min: ports[0], Max: ports[1]}, nil
}

// decodeUserID reads kernel-uid/-gid like upstream's UserID/GroupID: an
// integer, a numeric string, "" (the agent's own, kept as -1) or a name.
func (d *decoder) decodeUserID(t *table, key string, dst *int, lookupName func(string) (int, error)) {
	raw, written, found := t.lookup(key)
	if !found {
		return
	}
	switch v := raw.(type) {
	case int64:
		if v < -1 || v > 1<<31-1 {
			t.fail(written, "%d is not a valid id (use -1 for the agent's own)", v)
			return
		}
		*dst = int(v)
	case string:
		trimmed := strings.TrimSpace(v)
		if trimmed == "" {
			*dst = -1
			return
		}
		if n, err := strconv.Atoi(trimmed); err == nil {
			if n < -1 {
				t.fail(written, "%d is not a valid id (use -1 for the agent's own)", n)
				return
			}
			*dst = n
			return
		}
		if lookupName == nil {
			t.fail(written, "cannot resolve the name %q on this system", trimmed)
			return
		}
		id, err := lookupName(trimmed)
		if err != nil {
			t.fail(written, "cannot resolve %q: %v", trimmed, err)
			return
		}
		*dst = id
	default:
		t.fail(written, "must be an integer id or a name, got %s", typeName(raw))
	}
}

func (d *decoder) decodeResource(t *table, r *ResourceConfig) {
	t.integer("reserved-cpu", &r.ReservedCPU, 0, 1<<20)
	t.byteSize("reserved-mem", &r.ReservedMem)
	t.byteSize("reserved-disk", &r.ReservedDisk)
	enumValue(t, "allocation-mode", &r.AllocationMode, strings.ToLower, AllocationShared, AllocationAutoSplit, AllocationManual)
	if raw, _, found := t.lookup("allocations"); found {
		allocations := t.child("allocations") // reports a non-table value
		if _, isTable := raw.(map[string]any); isTable {
			r.Allocations = &ResourceAllocations{Devices: map[string]decimal.Decimal{}}
			d.decodeAllocations(allocations, r.Allocations)
		}
	}
	t.byteSize("memory-align-size", &r.MemoryAlignSize)
	t.stringList("allocation-order", &r.AllocationOrder)
	enumValue(t, "affinity-policy", &r.AffinityPolicy, normalizeAffinityPolicy, AffinityInterleaved, AffinityPreferSingleNode)
	t.finish()

	if r.MemoryAlignSize <= 0 {
		d.fail("resource.memory-align-size", "must be positive")
	}
}

// normalizeAffinityPolicy accepts "interleaved", "prefer-single-node" and
// upstream's "PREFER_SINGLE_NODE" alike.
func normalizeAffinityPolicy(raw string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(raw), "-", "_"))
}

func (d *decoder) decodeAllocations(t *table, a *ResourceAllocations) {
	for _, required := range []string{"cpu", "mem"} {
		if !t.has(required) {
			d.fail(t.keyPath(required), "required in [resource.allocations]")
		}
	}
	t.integer("cpu", &a.CPU, 0, 1<<20)
	t.byteSize("mem", &a.Mem)
	if raw, written, found := t.lookup("devices"); found {
		devices, ok := raw.(map[string]any)
		if !ok {
			t.fail(written, "must be a table of slot name = amount, got %s", typeName(raw))
		}
		for _, slot := range sortedKeys(devices) {
			value := devices[slot]
			if _, nested := value.(map[string]any); nested {
				t.fail(written+"."+slot, `must be an amount; a slot name with a dot must be quoted: { "%s.<name>" = ... }, not { %s.<name> = ... }`, slot, slot)
				continue
			}
			amount, err := toDecimal(value)
			if err != nil {
				t.fail(written+"."+slot, "%v", err)
				continue
			}
			if amount.Sign() < 0 {
				t.fail(written+"."+slot, "must not be negative, got %s", amount)
				continue
			}
			a.Devices[slot] = amount
		}
	}
	t.finish()
}

func (d *decoder) decodeContainerLogs(t *table, logs *ContainerLogsConfig) {
	t.byteSize("max-length", &logs.MaxLength)
	t.byteSize("chunk-size", &logs.ChunkSize)
	t.finish()
	if logs.ChunkSize <= 0 {
		d.fail("container-logs.chunk-size", "must be positive")
	}
}

func (d *decoder) decodeDebug(t *table, debug *DebugConfig) {
	t.boolean("enabled", &debug.Enabled)
	t.boolean("skip-container-deletion", &debug.SkipContainerDeletion)
	t.seconds("heartbeat-interval", &debug.HeartbeatInterval, false)
	t.boolean("log-stats", &debug.LogStats)
	t.boolean("log-kernel-config", &debug.LogKernelConfig)
	t.boolean("log-alloc-map", &debug.LogAllocMap)
	t.boolean("log-events", &debug.LogEvents)
	t.boolean("log-heartbeats", &debug.LogHeartbeats)
	t.boolean("log-docker-events", &debug.LogDockerEvents)
	t.ignore("kernel-runner", "coredump")
	t.accept("asyncio", "enhanced-aiomonitor-task-info")
	t.finish()
}

func (d *decoder) decodeAPI(t *table, api *APIConfig) {
	t.seconds("pull-timeout", &api.PullTimeout, true)
	t.seconds("push-timeout", &api.PushTimeout, true)
	t.ignore("commit-timeout")
	t.finish()
}

func (d *decoder) decodeLogging(t *table, logging *LoggingConfig) {
	enumValue(t, "level", &logging.Level, strings.ToLower,
		LogTrace, LogDebug, LogInfo, LogWarning, LogError, LogCritical, LogNotSet)
	enumValue(t, "format", &logging.Format, strings.ToLower, LogFormatConsole, LogFormatJSON)
	d.decodeLogDrivers(t)
	t.ignore("version", "disable-existing-loggers", "handlers", "loggers")
	// Python's per-package levels and console colours: nothing to honour.
	t.accept("pkg-ns", "console")
	t.finish()
}

// decodeLogDrivers reads logging.drivers. The agent logs to stderr
// (journald keeps it under systemd), which is upstream's console driver; the
// file, logstash and graylog drivers are ignored with a warning, and their
// tables earn one only when their driver is on.
func (d *decoder) decodeLogDrivers(t *table) {
	drivers := []string{"console"} // upstream's default
	t.stringList("drivers", &drivers)
	on := map[string]bool{}
	for _, driver := range drivers {
		switch driver {
		case "console":
		case "file", "logstash", "graylog":
			on[driver] = true
			d.warnings = append(d.warnings, Warning{Kind: WarnIgnoredKey, Key: t.keyPath("drivers"),
				Message: fmt.Sprintf("the %s driver is not honoured by baiagent, which logs to stderr only", driver)})
		default:
			t.fail("drivers", "%q is not one of console|file|logstash|graylog", driver)
		}
	}
	for _, driver := range []string{"file", "logstash", "graylog"} {
		if !on[driver] {
			t.accept(driver)
		}
	}
	t.ignore("file", "logstash", "graylog")
}

func (d *decoder) decodeRedis(t *table, redis *RedisConfig) {
	// [redis] may leave addr to etcd's config/redis (upstream's
	// SingleRedisConfig defaults it); the agent fails at start if neither names one.
	d.decodeRedisTarget(t, &redis.RedisTarget, false)
	t.integer("db", &redis.DB, 0, 1<<16)
	overrides := t.child("override-configs")
	for _, role := range sortedKeys(overrides.values) {
		if _, isTable := overrides.values[role].(map[string]any); !isTable {
			overrides.child(role) // reports the problem
			continue
		}
		sub := overrides.child(role)
		var target RedisTarget
		d.decodeRedisTarget(sub, &target, true)
		sub.finish()
		if redis.Overrides == nil {
			redis.Overrides = map[string]RedisTarget{}
		}
		redis.Overrides[role] = target
	}
	t.finish()
}

// decodeRedisTarget reads the keys [redis] shares with each of its
// override-configs (upstream's SingleRedisConfig, configs/redis.py).
func (d *decoder) decodeRedisTarget(t *table, target *RedisTarget, needsServer bool) {
	hasAddr := t.hostPort("addr", &target.Addr)
	sentinelBad := false
	if raw, written, found := t.lookup("sentinel"); found {
		addrs, err := parseSentinel(raw)
		if err != nil {
			t.fail(written, "%v", err)
			sentinelBad = true
		}
		target.Sentinel = addrs
	}
	t.str("service-name", &target.ServiceName)
	switch {
	case len(target.Sentinel) > 0 && target.ServiceName == "":
		t.fail("service-name", "required beside sentinel")
	case needsServer && len(target.Sentinel) == 0 && !hasAddr && !sentinelBad:
		t.fail("addr", "required unless sentinel names the servers")
	}
	t.str("password", &target.Password)
	var sentinelPassword string
	if t.str("sentinel-password", &sentinelPassword) {
		target.SentinelPassword = &sentinelPassword
	}
	t.boolean("use-tls", &target.UseTLS)
	t.boolean("tls-skip-verify", &target.TLSSkipVerify)
	var timeoutMS int
	t.integer("request-timeout", &timeoutMS, 0, 1<<31-1)
	target.RequestTimeout = time.Duration(timeoutMS) * time.Millisecond
	t.ignore("redis-helper-config")
}

// parseSentinel reads sentinel: "host:port,host:port" or an array of
// host:port values, as upstream's _parse_sentinel accepts.
func parseSentinel(raw any) ([]HostPort, error) {
	var items []any
	switch v := raw.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return nil, nil
		}
		for _, item := range strings.Split(v, ",") {
			items = append(items, strings.TrimSpace(item))
		}
	case []any:
		items = v
	default:
		return nil, fmt.Errorf("must be \"host:port,host:port\" or an array of host:port, got %s", typeName(raw))
	}
	addrs := make([]HostPort, 0, len(items))
	for i, item := range items {
		hp, err := ParseHostPort(item)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		addrs = append(addrs, hp)
	}
	return addrs, nil
}

func (d *decoder) decodeWatcher(t *table, w *WatcherConfig) {
	w.ServiceAddrConfigured = t.hostPort("service-addr", &w.ServiceAddr)
	t.boolean("ssl-enabled", &w.SSLEnabled)
	t.filePath("ssl-cert", &w.SSLCert)
	// Upstream's schema says ssl-key but its code reads ssl-privkey; take both.
	if t.has("ssl-key") {
		t.filePath("ssl-key", &w.SSLKey)
	} else {
		t.filePath("ssl-privkey", &w.SSLKey)
	}
	t.str("target-service", &w.TargetService)
	t.boolean("soft-reset-available", &w.SoftResetAvailable)
	t.finish()

	if host, set := d.env.Value(EnvWatcherServiceIP); set {
		w.ServiceAddr.Host = normalizeHost(host)
		w.ServiceAddrConfigured = true
	}
	if v, set := d.env.Value(EnvWatcherServicePort); set {
		if port, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || port < 1 || port > 65535 {
			d.failEnv(EnvWatcherServicePort, "watcher.service-addr", "invalid port %q: must be 1-65535", v)
		} else {
			w.ServiceAddr.Port = port
			w.ServiceAddrConfigured = true
		}
	}
}

// overcommitFromEnv puts BACKEND_CPU/MEM_OVERCOMMIT_FACTOR into the cpu
// plugin's table, over the file's value: upstream reads them as int() and
// takes the cpu factor from 1 to 10.
func (d *decoder) overcommitFromEnv(plugins map[string]map[string]any) {
	for _, o := range []struct {
		env, key string
		max      int64
	}{
		{EnvCPUOvercommit, "cpu-overcommit-factor", 10},
		{EnvMemOvercommit, "mem-overcommit-factor", 1000},
	} {
		v, set := d.env.Value(o.env)
		if !set {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 || n > o.max {
			d.failEnv(o.env, "plugins.cpu."+o.key, "%q must be a whole number from 1 to %d", v, o.max)
			continue
		}
		if plugins["cpu"] == nil {
			plugins["cpu"] = map[string]any{}
		}
		plugins["cpu"][o.key] = n
	}
}

// decodePlugins keeps each [plugins.<key>] table as it is; it only checks
// that it is a table and can be handed to the plugin as JSON.
func (d *decoder) decodePlugins(t *table, plugins map[string]map[string]any) {
	for _, key := range sortedKeys(t.values) {
		raw := t.values[key]
		t.used[key] = true
		values, ok := raw.(map[string]any)
		if !ok {
			t.fail(key, "must be a table, got %s", typeName(raw))
			continue
		}
		if _, err := json.Marshal(values); err != nil {
			t.fail(key, "cannot be passed to the plugin as JSON: %v", err)
			continue
		}
		plugins[key] = values
	}
}
