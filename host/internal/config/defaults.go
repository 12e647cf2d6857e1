package config

import (
	"path/filepath"
	"time"
)

// Defaults that are not upstream's (upstream has no such keys).
const (
	DefaultPluginDir = "/usr/local/lib/baiagent/plugins"
	// DefaultRegion is agent.region without the key and $BACKEND_REGION.
	DefaultRegion = "local"
	// DefaultPluginStartTimeout is generous because NVML and similar driver
	// libraries can take long to initialise; it matches pluginhost's default.
	DefaultPluginStartTimeout = 2 * time.Minute
	// DefaultRootPluginRuntimeDir is used when the agent runs as root.
	DefaultRootPluginRuntimeDir = "/run/baiagent/plugins"
	// maxPluginRuntimeDirLen leaves room under the 107-byte unix socket path
	// limit for a socket name such as "plugin1234567890".
	maxPluginRuntimeDirLen = 80
)

// defaults returns upstream's defaults (agent/config/unified.py, common/configs/etcd.py,
// agent/watcher), with relative default paths resolved against workDir as
// upstream does. agent.backend has no default: the file must name it.
func defaults(workDir string) Config {
	relative := func(path string) string { return filepath.Join(workDir, path) }
	return Config{
		Etcd: EtcdConfig{
			Namespace: "local",
			Addrs:     []HostPort{{Host: "127.0.0.1", Port: 2379}},
		},
		Agent: AgentConfig{
			RPCListenAddr:             HostPort{Host: "0.0.0.0", Port: 6001},
			InternalAddr:              HostPort{Host: "0.0.0.0", Port: 6003},
			IPCBasePath:               "/tmp/backend.ai/ipc",
			VarBasePath:               relative("var/lib/backend.ai"),
			ImageCommitPath:           relative("tmp/backend.ai/commit"),
			PIDFile:                   "/dev/null",
			ScalingGroupType:          ResourceGroupCompute,
			AgentSockPort:             6007,
			KernelCreationConcurrency: 4,
			SyncContainerLifecycles:   SyncContainerLifecyclesConfig{Enabled: true, Interval: 10 * time.Second},
			UtilizationMetric: UtilizationMetricConfig{
				Node:      MetricCollectionConfig{Enable: true, Interval: 30 * time.Second},
				Container: MetricCollectionConfig{Enable: true, Interval: 30 * time.Second},
				Process:   MetricCollectionConfig{Enable: true, Interval: 30 * time.Second},
			},
			PluginDirs:         []string{DefaultPluginDir},
			PluginStartTimeout: DefaultPluginStartTimeout,
		},
		Container: ContainerConfig{
			KernelUID:         -1,
			KernelGID:         -1,
			PortRange:         PortRange{Min: 30000, Max: 31000},
			PortReuseCooldown: 60 * time.Second,
			StatsType:         StatsDocker,
			SandboxType:       SandboxDocker,
			ScratchType:       ScratchHostDir,
			ScratchRoot:       relative("scratches"),
			ScratchSize:       0,
		},
		Resource: ResourceConfig{
			ReservedCPU:     1,
			ReservedMem:     1 << 30,
			ReservedDisk:    8 << 30,
			AllocationMode:  AllocationShared,
			MemoryAlignSize: 16 << 20,
			AllocationOrder: []string{"cuda", "rocm", "tpu", "cpu", "mem"},
			AffinityPolicy:  AffinityInterleaved,
		},
		API: APIConfig{
			PullTimeout: 7200 * time.Second,
		},
		ContainerLogs: ContainerLogsConfig{
			MaxLength: 10 << 20,
			ChunkSize: 64 << 10,
		},
		Debug: DebugConfig{
			HeartbeatInterval: 20 * time.Second,
		},
		Logging: LoggingConfig{
			Level:  LogInfo,
			Format: LogFormatConsole,
		},
		Watcher: WatcherConfig{
			ServiceAddr:   HostPort{Host: "0.0.0.0", Port: 6009},
			TargetService: "backendai-agent.service",
		},
		Plugins: map[string]map[string]any{},
	}
}
