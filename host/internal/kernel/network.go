package kernel

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
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
	_, err := m.cfg.Docker.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("network %s: %w", name, err)
	}
	_, err = m.cfg.Docker.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelClusterNetwork: "1"},
	})
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
	insp, err := m.cfg.Docker.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("network %s: %w", name, err)
	}
	if insp.Network.Labels[LabelClusterNetwork] != "1" {
		return fmt.Errorf("%w: network %s was not made by create_local_network (no %s label); not removing it",
			ErrInvalidNetwork, name, LabelClusterNetwork)
	}
	if _, err := m.cfg.Docker.NetworkRemove(ctx, insp.Network.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
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
	if _, err := m.cfg.Docker.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("%w: network %s does not exist (create_local_network first)", ErrInvalidRequest, name)
		}
		return fmt.Errorf("network %s: %w", name, err)
	}
	return nil
}
