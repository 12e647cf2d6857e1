// Package config loads, validates and prints agent.toml, the local configuration
// file of a Backend.AI compute agent.
//
// The file format, defaults and environment overrides follow upstream's
// backend.ai-agent (agent/config/unified.py, agent/server.py) so that an
// existing agent.toml keeps working. A value this agent cannot honour (a
// non-docker backend, the jail sandbox, a non-hostdir scratch) is refused,
// naming the key and why; other upstream keys it does not act on are
// accepted with a warning unless they hold upstream's default or are
// switched off, and unknown keys are warned about, as upstream does.
// baiagent adds a few keys of its own: etcd.embedded, etcd.data-dir and the
// agent.plugin-* keys that drive the out-of-process compute plugins.
package config

import (
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
)

// Config is the effective configuration of one agent: the file's values,
// upstream's defaults and the environment overrides, validated.
type Config struct {
	// SourcePath is the absolute path of the file the config was read from;
	// empty when it was parsed from bytes without a path.
	SourcePath string

	Etcd      EtcdConfig
	Agent     AgentConfig
	Container ContainerConfig
	Resource  ResourceConfig
	Debug     DebugConfig
	Logging   LoggingConfig
	// ContainerLogs is [container-logs], how much of a finished kernel's
	// log is kept for the manager.
	ContainerLogs ContainerLogsConfig
	// Redis is nil when the file has no [redis] section; the Redis address then
	// comes from etcd (config/redis/*).
	Redis   *RedisConfig
	Watcher WatcherConfig
	API     APIConfig
	// Plugins holds the free-form [plugins.<key>] tables, passed to the compute
	// plugin named <key> as JSON. Relative paths inside them are not rewritten;
	// a plugin host resolves them against Dir().
	Plugins map[string]map[string]any
}

// EtcdConfig is the [etcd] section.
type EtcdConfig struct {
	Namespace string
	// Addrs is etcd.addr: one "host:port" or a list of them (upstream accepts both).
	Addrs    []HostPort
	User     string
	Password string
	// Embedded (ours) runs a single-node etcd for the agent, listening on
	// Addrs[0], as the agent's child process (baiagent-etcd).
	Embedded bool
	// DataDir (ours) is the embedded etcd's data directory; it defaults to
	// <agent.var-base-path>/etcd.
	DataDir string
	// EmbeddedExecutable (ours) is the embedded etcd's executable; empty
	// means baiagent-etcd beside the agent's.
	EmbeddedExecutable string
}

// Backend is agent.backend.
type Backend string

// The backends upstream accepts.
const (
	BackendDocker     Backend = "docker"
	BackendKubernetes Backend = "kubernetes"
	BackendDummy      Backend = "dummy"
)

// ResourceGroupType is agent.scaling-group-type.
type ResourceGroupType string

// The resource group types upstream accepts.
const (
	ResourceGroupCompute ResourceGroupType = "compute"
	ResourceGroupStorage ResourceGroupType = "storage"
)

// AgentConfig is the [agent] section.
type AgentConfig struct {
	Backend Backend
	// RPCListenAddr may have an empty host, which means "detect the host IP".
	RPCListenAddr     HostPort
	AdvertisedRPCAddr *HostPort
	InternalAddr      HostPort
	// SSLEnabled serves InternalAddr over TLS with SSLCert and SSLKey (PEM).
	SSLEnabled bool
	SSLCert    string
	SSLKey     string

	// Paths of the ZeroMQ CURVE keys; empty disables RPC authentication.
	RPCAuthManagerPublicKey string
	RPCAuthAgentKeypair     string

	IPCBasePath     string
	VarBasePath     string
	MountPath       string
	AbuseReportPath string
	PIDFile         string
	// ImageCommitPath (image-commit-path) holds committed kernel images
	// saved as tars, <path>/<subdir>/<file>, and the commit locks,
	// <path>/<subdir>/lock/<kernel-id>.
	ImageCommitPath string

	// ID is "i-<hostname>" when the file leaves it empty.
	ID                       string
	Region                   string
	InstanceType             string
	PublicHost               string
	InitialResourceGroupName string
	ScalingGroupType         ResourceGroupType

	SkipManagerDetection bool

	// AllowComputePlugins and BlockComputePlugins are nil when the key is
	// absent, which differs from an empty list: an empty allow list allows nothing.
	AllowComputePlugins []string
	BlockComputePlugins []string

	AgentSockPort                   int
	KernelCreationConcurrency       int
	ForceTerminateAbusingContainers bool
	SyncContainerLifecycles         SyncContainerLifecyclesConfig
	UtilizationMetric               UtilizationMetricConfig

	// PluginDirs (ours) are searched for compute plugin executables, in order.
	PluginDirs []string
	// PluginChecksums (ours) pins plugin executables by name to "sha256:<hex>".
	PluginChecksums map[string]string
	// PluginStartTimeout (ours) bounds a plugin's handshake.
	PluginStartTimeout time.Duration
	// PluginRuntimeDir (ours) holds plugin sockets and is their TMPDIR; it is
	// kept short because a unix socket path is limited to 107 bytes.
	PluginRuntimeDir string
	// KernelRunnerPath (ours) is the static kernel runner mounted into every
	// kernel; empty means baiagent-kernel-runner beside the agent binary.
	KernelRunnerPath string
}

// SyncContainerLifecyclesConfig is [agent.sync-container-lifecycles].
type SyncContainerLifecyclesConfig struct {
	Enabled  bool
	Interval time.Duration
}

// UtilizationMetricConfig is [agent.utilization-metric].
type UtilizationMetricConfig struct {
	Node      MetricCollectionConfig
	Container MetricCollectionConfig
	Process   MetricCollectionConfig
}

// MetricCollectionConfig is one [agent.utilization-metric.<scope>] table.
type MetricCollectionConfig struct {
	Enable   bool
	Interval time.Duration
}

// StatsType is container.stats-type.
type StatsType string

// The stats modes upstream accepts.
const (
	StatsDocker StatsType = "docker"
	StatsCgroup StatsType = "cgroup"
)

// SandboxType is container.sandbox-type.
type SandboxType string

// The sandbox types upstream accepts.
const (
	SandboxDocker SandboxType = "docker"
	SandboxJail   SandboxType = "jail"
)

// ScratchType is container.scratch-type.
type ScratchType string

// The scratch types upstream accepts.
const (
	ScratchHostDir  ScratchType = "hostdir"
	ScratchHostFile ScratchType = "hostfile"
	ScratchMemory   ScratchType = "memory"
	ScratchK8sNFS   ScratchType = "k8s-nfs"
)

// ContainerConfig is the [container] section.
type ContainerConfig struct {
	// BindHost empty means "detect from the container subnet or the RPC host".
	BindHost       string
	AdvertisedHost string
	// KernelUID and KernelGID of -1 mean "the agent's own uid/gid".
	KernelUID         int
	KernelGID         int
	PortRange         PortRange
	PortReuseCooldown time.Duration
	StatsType         StatsType
	SandboxType       SandboxType
	ScratchType       ScratchType
	ScratchRoot       string
	ScratchSize       ByteSize
	// KrunnerVolumes is nil when unset (the agent detects them).
	KrunnerVolumes map[string]string
}

// PortRange is an inclusive range of host ports for kernel services.
type PortRange struct {
	Min int
	Max int
}

// AllocationMode is resource.allocation-mode.
type AllocationMode string

// The allocation modes upstream accepts.
const (
	AllocationShared    AllocationMode = "shared"
	AllocationAutoSplit AllocationMode = "auto-split"
	AllocationManual    AllocationMode = "manual"
)

// AffinityPolicy is resource.affinity-policy. The values are upstream's enum
// names, the only spelling upstream accepts (case-insensitively).
type AffinityPolicy string

// The affinity policies upstream accepts.
const (
	AffinityInterleaved      AffinityPolicy = "INTERLEAVED"
	AffinityPreferSingleNode AffinityPolicy = "PREFER_SINGLE_NODE"
)

// ResourceConfig is the [resource] section.
type ResourceConfig struct {
	ReservedCPU    int
	ReservedMem    ByteSize
	ReservedDisk   ByteSize
	AllocationMode AllocationMode
	// Allocations is set exactly when AllocationMode is manual.
	Allocations     *ResourceAllocations
	MemoryAlignSize ByteSize
	AllocationOrder []string
	AffinityPolicy  AffinityPolicy
}

// ResourceAllocations is [resource.allocations], this agent's share of the
// node in manual allocation mode.
type ResourceAllocations struct {
	CPU     int
	Mem     ByteSize
	Devices map[string]decimal.Decimal
}

// APIConfig is the [api] section: bounds on the image operations the
// manager asks for.
type APIConfig struct {
	// PullTimeout bounds one image pull (pull-timeout, seconds, default
	// 7200); zero means no limit, as upstream treats 0.
	PullTimeout time.Duration
	// PushTimeout bounds one image push (push-timeout, seconds); zero,
	// upstream's default, means no limit.
	PushTimeout time.Duration
}

// ContainerLogsConfig is [container-logs] (upstream's ContainerLogsConfig):
// at most MaxLength bytes of a kernel's log are kept, in ChunkSize pieces.
type ContainerLogsConfig struct {
	MaxLength ByteSize
	ChunkSize ByteSize
}

// DebugConfig is the [debug] section.
type DebugConfig struct {
	// Enabled serves Go's profiles on the internal endpoint (/debug/pprof/).
	Enabled               bool
	SkipContainerDeletion bool
	HeartbeatInterval     time.Duration
	LogStats              bool
	LogKernelConfig       bool
	LogAllocMap           bool
	LogEvents             bool
	LogHeartbeats         bool
	LogDockerEvents       bool
}

// LogLevel is logging.level, lower-cased.
type LogLevel string

// The log levels upstream accepts.
const (
	LogTrace    LogLevel = "trace"
	LogDebug    LogLevel = "debug"
	LogInfo     LogLevel = "info"
	LogWarning  LogLevel = "warning"
	LogError    LogLevel = "error"
	LogCritical LogLevel = "critical"
	LogNotSet   LogLevel = "notset"
)

// LogFormat is logging.format (ours).
type LogFormat string

// The log formats this agent writes.
const (
	LogFormatConsole LogFormat = "console"
	LogFormatJSON    LogFormat = "json"
)

// LoggingConfig is the [logging] section.
type LoggingConfig struct {
	Level  LogLevel
	Format LogFormat
}

// RedisTarget is one place to reach Redis: [redis] itself or one of its
// override-configs entries (upstream's SingleRedisConfig).
type RedisTarget struct {
	// Addr is unset (zero) when Sentinel names the servers instead.
	Addr HostPort
	// Sentinel, when set, replaces Addr and requires ServiceName.
	Sentinel    []HostPort
	ServiceName string
	Password    string
	// SentinelPassword is nil when the sentinels take Password.
	SentinelPassword *string
	UseTLS           bool
	TLSSkipVerify    bool
	// RequestTimeout is request-timeout (milliseconds upstream); zero is unset.
	RequestTimeout time.Duration
}

// RedisConfig is [redis], used when etcd's config/redis names no server.
type RedisConfig struct {
	RedisTarget
	// DB (ours) is the logical database for roles without a fixed one.
	DB int
	// Overrides are override-configs.{role}: whole targets for one role
	// each; nil when none.
	Overrides map[string]RedisTarget
}

// WatcherConfig is the [watcher] section, read by `baiagent watcher`.
type WatcherConfig struct {
	ServiceAddr HostPort
	// ServiceAddrConfigured says whether service-addr was written in the file
	// or the environment; only then is watcher_port published to etcd.
	ServiceAddrConfigured bool
	SSLEnabled            bool
	SSLCert               string
	SSLKey                string
	TargetService         string
	SoftResetAvailable    bool
}

// Zerolog is the level as a zerolog threshold. Upstream's "critical" becomes
// FatalLevel (a threshold only: nothing aborts), and "notset", which lets
// Python's root logger pass everything, becomes TraceLevel.
func (l LogLevel) Zerolog() zerolog.Level {
	switch l {
	case LogTrace, LogNotSet:
		return zerolog.TraceLevel
	case LogDebug:
		return zerolog.DebugLevel
	case LogWarning:
		return zerolog.WarnLevel
	case LogError:
		return zerolog.ErrorLevel
	case LogCritical:
		return zerolog.FatalLevel
	default:
		return zerolog.InfoLevel
	}
}
