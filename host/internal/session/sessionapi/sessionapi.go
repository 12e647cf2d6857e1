// Package sessionapi is the session service's vocabulary in plain Go
// types: what the RPC layer decodes a manager's call into and what it
// hands back. It imports nothing of Docker, the kernel package or the
// wire codec, so that the RPC layer depends on none of them through it.
package sessionapi

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// Error is an error with the Python exception class name the manager
// sees in a FAILURE (upstream's agent exceptions: KernelNotFoundError,
// InsufficientResource, TypeError, ...).
type Error struct {
	Name string
	Err  error
}

func (e *Error) Error() string { return e.Name + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KernelSession is one (kernel_id, session_id) pair of sync_kernel_registry.
type KernelSession struct {
	KernelID  string
	SessionID string
}

// Auto-pull behaviours (upstream's AutoPullBehavior values).
const (
	AutoPullDigest = "digest"
	AutoPullTag    = "tag"
	AutoPullNone   = "none"
)

// ImageRegistry is upstream's ImageRegistry TypedDict.
type ImageRegistry struct {
	Name     string
	URL      string
	Username string
	Password string
}

// ImageConfig is upstream's ImageConfig TypedDict (the "image" key of a
// KernelCreationConfig): {canonical, project, architecture, digest,
// repo_digest, registry, labels, is_local, auto_pull}.
type ImageConfig struct {
	Canonical    string
	Project      string
	Architecture string
	Digest       string
	RepoDigest   string
	Registry     ImageRegistry
	Labels       map[string]string
	IsLocal      bool
	// AutoPull is the image config's own auto_pull; empty when absent.
	AutoPull string
}

// VFolderMount is one entry of "mounts" (upstream's VFolderMount.to_json()).
type VFolderMount struct {
	Name       string
	VFID       string
	VFSubpath  string
	HostPath   string
	KernelPath string
	// MountPerm is "ro", "rw" or "wd" (write-delete).
	MountPerm string
	UsageMode string
}

// Dotfile is one entry of internal_data.dotfiles.
type Dotfile struct {
	Path string
	// Perm is the octal mode as the manager sends it ("644").
	Perm string
	Data string
}

// InternalData is what the kernel manager takes from internal_data
// besides the ssh keypair and the model definition.
type InternalData struct {
	Dotfiles          []Dotfile
	Sudo              bool
	DockerCredentials []byte // JSON, for config/docker-creds.json
	PreventVFolders   bool
	BlockServicePorts bool
}

// KernelCreationConfig is upstream's KernelCreationConfig TypedDict
// (common/types.py) as the sokovan launcher fills it. Keys the manager may
// leave out (older managers, the registry path) take zero values.
type KernelCreationConfig struct {
	Image          ImageConfig
	KernelID       string // optional; the kernel_ids argument is authoritative
	SessionID      string // optional; the session_id argument is authoritative
	OwnerUserID    string
	OwnerProjectID string
	NetworkID      string
	// AutoPull is "digest", "tag" or "none"; the default is "digest" as
	// upstream's kernel_config.get("auto_pull", "digest").
	AutoPull        string
	SessionType     string // "interactive", "batch", "inference", "system"
	ClusterMode     string // "single-node" or "multi-node"
	ClusterRole     string
	ClusterIdx      int
	LocalRank       int
	ClusterHostname string
	// UID, MainGID: -1 when absent or None.
	UID               int
	MainGID           int
	SupplementaryGIDs []int
	ResourceSlots     map[string]decimal.Decimal
	// ResourceOpts and InternalData are the dicts as decoded, for the
	// record; what the service uses of them is read into ShmSize,
	// DenyFragmentation, UserSSHKeypair, Internal and ModelDefinition.
	ResourceOpts     map[string]any
	Environ          map[string]string
	Mounts           []VFolderMount
	PackageDirectory []string
	IdleTimeout      int64
	BootstrapScript  string
	StartupCommand   string
	InternalData     map[string]any
	// UserSSHKeypair is internal_data.ssh_keypair, the user's keypair.
	UserSSHKeypair *ClusterSSHKeyPair
	// Internal is the rest of internal_data the kernel manager uses.
	Internal InternalData
	// ModelDefinition is internal_data.model_definition as JSON values
	// (maps, lists, strings, numbers), nil when absent or falsy.
	ModelDefinition any
	// ShmSize is resource_opts.shmem in bytes, 0 for Docker's default.
	ShmSize int64
	// DenyFragmentation is resource_opts.allow_fractional_resource_fragmentation = False.
	DenyFragmentation  bool
	PreopenPorts       []int
	AllocatedHostPorts []int
	ScalingGroup       string
	AgentAddr          string
	EndpointID         string
}

// ClusterSSHKeyPair is upstream's ClusterSSHKeyPair.
type ClusterSSHKeyPair struct {
	PublicKey  string
	PrivateKey string
}

// ClusterHost is one entry of cluster_ssh_port_mapping: a kernel's
// hostname and the address its sshd is reached at.
type ClusterHost struct {
	Hostname string
	Host     string
	Port     int
}

// ClusterInfo is upstream's ClusterInfo TypedDict.
type ClusterInfo struct {
	Mode          string
	Size          int
	Replicas      map[string]int
	NetworkConfig map[string]any
	// NetworkName is the older managers' network_name.
	NetworkName string
	SSHKeypair  *ClusterSSHKeyPair
	// SSHPortMapping is cluster_ssh_port_mapping: hostname -> (host, port),
	// as sent (for port-mapping.json); Hosts is the same, checked.
	SSHPortMapping map[string]any
	Hosts          []ClusterHost
	// JSON is cluster_info as upstream's dump_json writes it to cluster.json.
	JSON []byte
}

// KernelToCreate is one kernel of a create_kernels call.
type KernelToCreate struct {
	ID     string
	Config KernelCreationConfig
	// Image is the name the node knows the image by: the canonical name,
	// or a local image's short name.
	Image string
	// Architecture is the image's architecture, from its ImageRef.
	Architecture string
}

// CreateKernels is create_kernels: a session's kernels, created together.
type CreateKernels struct {
	SessionID string
	Kernels   []KernelToCreate
	Cluster   ClusterInfo
}

// Destroy is destroy_kernel.
type Destroy struct {
	KernelID  string
	SessionID string
	// Reason is the termination reason, "" for user-requested; Verbatim
	// says it came as the manager's own str, which kernel_terminated
	// echoes as it came.
	Reason   lifecycle.Reason
	Verbatim bool
	// Suppress: no kernel_terminated for this destroy (suppress_events).
	Suppress bool
}

// Execution modes of execute (upstream's run modes).
const (
	ModeQuery    = "query"
	ModeBatch    = "batch"
	ModeInput    = "input"
	ModeContinue = "continue"
)

// Execution is execute: one step of a run in a kernel.
type Execution struct {
	SessionID string
	KernelID  string
	RunID     string
	Mode      string
	Code      string
	// FlushTimeout is flush_timeout; zero leaves the runner's default.
	FlushTimeout time.Duration
	// Options is opts; a batch run reads clean, build and exec from it.
	Options map[string]any
}

// BatchTrigger is trigger_batch_execution: a batch session's job.
type BatchTrigger struct {
	SessionID string
	KernelID  string
	Code      string
	// Timeout bounds the job; nil is none, and zero or less times out at
	// once (as asyncio.timeout).
	Timeout *time.Duration
}

// ServicePort is one of a kernel's service ports as the manager reads it
// (upstream's ServicePort with get-apps' keys merged in).
type ServicePort struct {
	Name             string
	Protocol         string
	ContainerPorts   []int
	HostPorts        []int
	IsInference      bool
	URLTemplate      string
	AllowedArguments []string
	AllowedEnvs      []string
}

// KernelSummary is one kernel of baiagent_list_kernels.
type KernelSummary struct {
	ID           string
	SessionID    string
	ContainerID  string
	Image        string
	State        string
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []ServicePort
	CreatedAt    time.Time
}

// FileListing is list_files' answer.
type FileListing struct {
	Files   string // JSON
	Errors  string
	Abspath string
}

// Completion is get_completions' request.
type Completion struct {
	Code     string
	Row, Col int
	Line     string
	Post     string
}

// ServiceResult is start_service's answer: status, and error when not "".
type ServiceResult struct {
	Status string
	Error  string
}

// Restart is restart_kernel.
type Restart struct {
	SessionID string
	KernelID  string
	// Image is the new container's image; empty keeps the kernel's.
	Image string
	// Update is updated_config as decoded, and Present says which of its
	// keys the manager sent; nil Present changes nothing.
	Update  KernelCreationConfig
	Present func(key string) bool
}

// Restarted is restart_kernel's answer.
type Restarted struct {
	ContainerID  string
	ReplInPort   int
	ReplOutPort  int
	ServicePorts []ServicePort
}

// Commit is commit's request.
type Commit struct {
	KernelID    string
	Subdir      string
	Canonical   string
	Filename    string
	ExtraLabels map[string]string
}

// ServicePortDicts are a kernel's service_ports as upstream's
// create_kernel leaves them after merging get-apps, and as
// create_kernels, kernel_started and restart_kernel carry them.
func ServicePortDicts(ports []ServicePort) []any {
	out := make([]any, 0, len(ports))
	for _, sp := range ports {
		container := make([]any, len(sp.ContainerPorts))
		for i, p := range sp.ContainerPorts {
			container[i] = int64(p)
		}
		host := make([]any, len(sp.HostPorts))
		for i, p := range sp.HostPorts {
			host[i] = int64(p)
		}
		entry := map[string]any{
			"name": sp.Name, "protocol": sp.Protocol, "container_ports": container, "host_ports": host,
			"is_inference": sp.IsInference,
		}
		// get-apps' keys, only where the image's definition sets them,
		// as upstream's ServiceParser.get_apps reports them.
		if sp.URLTemplate != "" {
			entry["url_template"] = sp.URLTemplate
		}
		if len(sp.AllowedArguments) > 0 {
			entry["allowed_arguments"] = stringsWire(sp.AllowedArguments)
		}
		if len(sp.AllowedEnvs) > 0 {
			entry["allowed_envs"] = stringsWire(sp.AllowedEnvs)
		}
		out = append(out, entry)
	}
	return out
}

func stringsWire(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
