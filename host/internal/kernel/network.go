package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// LabelClusterNetwork marks the bridge networks create_local_network makes
// (upstream's label); only such networks are ever removed.
const LabelClusterNetwork = "ai.backend.cluster-network"

// ErrInvalidNetwork means a network name or network is not acceptable.
var ErrInvalidNetwork = errors.New("invalid network")

// Docker's own rule for network names, and predefined networks that are
// never a session's.
var networkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func validNetworkName(name string) error {
	switch {
	case !networkName.MatchString(name):
		return fmt.Errorf("%w: network name %q (want letters, digits, '_', '.', '-', starting with a letter or digit)", ErrInvalidNetwork, name)
	case name == "bridge" || name == "host" || name == "none" || name == "default":
		return fmt.Errorf("%w: %q is a predefined Docker network, not a session network", ErrInvalidNetwork, name)
	}
	return nil
}

// CreateLocalNetwork is upstream's create_local_network: a bridge network
// for a single-node multi-container session, whose kernels reach each
// other by cluster hostname. A network of that name that exists already
// is left as it is (the manager may ask twice).
func (m *Manager) CreateLocalNetwork(ctx context.Context, name string) error {
	if err := validNetworkName(name); err != nil {
		return err
	}
	_, err := m.cfg.Engine.NetworkInspect(ctx, name)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("network %s: %w", name, err)
	}
	err = m.cfg.Engine.NetworkCreate(ctx, name, map[string]string{LabelClusterNetwork: "1"})
	if err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("create network %s: %w", name, err)
	}
	return nil
}

// DestroyLocalNetwork is upstream's destroy_local_network; a missing
// network is not an error. Unlike upstream it refuses a network that
// create_local_network did not make, so that a wrong name cannot remove
// someone else's network.
func (m *Manager) DestroyLocalNetwork(ctx context.Context, name string) error {
	if err := validNetworkName(name); err != nil {
		return err
	}
	insp, err := m.cfg.Engine.NetworkInspect(ctx, name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("network %s: %w", name, err)
	}
	if insp.Labels[LabelClusterNetwork] != "1" {
		return fmt.Errorf("%w: network %s was not made by create_local_network (no %s label); not removing it",
			ErrInvalidNetwork, name, LabelClusterNetwork)
	}
	if err := m.cfg.Engine.NetworkRemove(ctx, insp.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// checkNetwork verifies that a kernel's network exists before anything is
// allocated for it.
func (m *Manager) checkNetwork(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	if _, err := m.cfg.Engine.NetworkInspect(ctx, name); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("%w: network %s does not exist (create_local_network first)", ErrInvalidRequest, name)
		}
		return fmt.Errorf("network %s: %w", name, err)
	}
	return nil
}

// The cluster_info.network_config modes a kernel can be created in.
const (
	// NetworkModeBridge joins the session's bridge network (Network), or
	// Docker's default bridge when there is none.
	NetworkModeBridge = "bridge"
	// NetworkModeHost shares the host's network, as upstream's host
	// network plugin (agent/docker/intrinsic.py HostNetworkPlugin).
	NetworkModeHost = "host"
)

// ErrNetworkMode means a network mode this agent does not serve.
var ErrNetworkMode = errors.New("unsupported network mode")

// CheckNetworkMode accepts the modes this agent serves: "" (the default
// bridge), bridge and host. Upstream's other modes are network plugins
// (overlay for multi-node sessions) that this agent does not load.
func CheckNetworkMode(mode string) error {
	switch mode {
	case "", NetworkModeBridge, NetworkModeHost:
		return nil
	}
	return fmt.Errorf("%w %q: network plugin %s is not loaded (this agent serves %q and %q)",
		ErrNetworkMode, mode, mode, NetworkModeBridge, NetworkModeHost)
}

// ClusterHost is one entry of cluster_ssh_port_mapping: a kernel of the
// session by cluster hostname, and where its sshd is reached.
type ClusterHost struct {
	Hostname string
	Host     string
	Port     int
}

// sshdHostPort is the host port cluster_ssh_port_mapping gives this
// kernel's sshd, as upstream's start_container looks it up by cluster
// hostname. The 26.8 manager keys its host-mode mapping by
// "node-<kernel id>" instead, so that name is looked up too.
func (req CreateRequest) sshdHostPort() (int, bool) {
	for _, name := range []string{req.ClusterHostname, "node-" + req.KernelID} {
		for _, h := range req.ClusterHosts {
			if name != "" && h.Hostname == name && h.Port > 0 {
				return h.Port, true
			}
		}
	}
	return 0, false
}

// extraHosts are the /etc/hosts entries of a host-network kernel: every
// kernel of the session by cluster hostname, as upstream's host network
// plugin adds them, sorted so that the container config is stable.
func extraHosts(hosts []ClusterHost) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, h.Hostname+":"+h.Host)
	}
	slices.Sort(out)
	return out
}

// IntrinsicPortsFile is config/intrinsic-ports.json: in host network mode,
// the host ports the runner binds its REPL sockets and sshd to, as
// upstream's host network plugin writes it for its runner
// (prepare_port_forward; kernel/base.py reads it).
const IntrinsicPortsFile = "intrinsic-ports.json"

func writeIntrinsicPorts(dirs scratch.Dirs, rec scratch.Recovery) error {
	ports := map[string]int{"replin": rec.ReplInPort, "replout": rec.ReplOutPort}
	for _, sp := range rec.ServicePorts {
		if sp.Name == protocol.SSHDService && len(sp.HostPorts) > 0 {
			ports[sp.Name] = sp.HostPorts[0]
		}
	}
	raw, err := json.Marshal(ports)
	if err != nil {
		return fmt.Errorf("%s: %w", IntrinsicPortsFile, err)
	}
	return atomicfile.Write(filepath.Join(dirs.Config, IntrinsicPortsFile), raw, 0o644)
}

// ClusterInfoFile is config/cluster.json: the creation request's
// cluster_info as JSON, which upstream stores beside kconfig for restarts.
// It holds the cluster's private key, so only the agent reads it.
const ClusterInfoFile = "cluster.json"

func writeClusterInfo(dirs scratch.Dirs, raw []byte) error {
	if raw == nil {
		return nil
	}
	return atomicfile.Write(filepath.Join(dirs.Config, ClusterInfoFile), raw, 0o600)
}
