package etcdstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/baiagent/baiagent/host/internal/config"
)

// AgentStatus is the value of the node key nodes/agents/{id}.
type AgentStatus string

// The only two values upstream ever writes there.
const (
	AgentStarting AgentStatus = "starting"
	AgentRunning  AgentStatus = "running"
)

// SetStatus writes the agent's status at the node scope's own key. As
// upstream puts key "" in the node scope, the full key is
// /sorna/{ns}/nodes/agents/{id}/ (with the trailing slash).
func (c *Client) SetStatus(ctx context.Context, status AgentStatus) error {
	if err := c.Put(ctx, ScopeNode, "", string(status)); err != nil {
		return fmt.Errorf("etcdstore: set agent status %q: %w", status, err)
	}
	return nil
}

// NodeAddress is what the manager reads to reach this node.
type NodeAddress struct {
	// IP is the RPC host (nodes/agents/{id}/ip).
	IP string
	// WatcherPort is published only when non-zero.
	WatcherPort int
}

// NodeAddressFromConfig takes the RPC listen host, as upstream does (after
// its host auto-detection, which callers must have applied when the file
// left the host empty), and the watcher port only when [watcher]
// service-addr was configured.
func NodeAddressFromConfig(cfg *config.Config) NodeAddress {
	addr := NodeAddress{IP: cfg.Agent.RPCListenAddr.Host}
	if cfg.Watcher.ServiceAddrConfigured {
		addr.WatcherPort = cfg.Watcher.ServiceAddr.Port
	}
	return addr
}

// PublishNodeAddress writes ip and, when set, watcher_port in the node scope.
func (c *Client) PublishNodeAddress(ctx context.Context, addr NodeAddress) error {
	if addr.IP == "" {
		return fmt.Errorf("etcdstore: publish node address: empty RPC host")
	}
	if err := c.Put(ctx, ScopeNode, "ip", addr.IP); err != nil {
		return err
	}
	if addr.WatcherPort != 0 {
		if err := c.Put(ctx, ScopeNode, "watcher_port", strconv.Itoa(addr.WatcherPort)); err != nil {
			return err
		}
	}
	return nil
}

// Deregister deletes the node keys this package writes (status, ip,
// watcher_port). Upstream's agent never does this: at shutdown it leaves
// its keys (status stays "running"), and the manager tracks liveness through
// heartbeats. Use it only to decommission a node on purpose.
func (c *Client) Deregister(ctx context.Context) error {
	for _, key := range []string{"", "ip", "watcher_port"} {
		if err := c.Delete(ctx, ScopeNode, key); err != nil {
			return err
		}
	}
	return nil
}
