package agent

import (
	"net"
	"net/netip"

	"github.com/baiagent/baiagent/host/internal/etcdstore"
)

// subnetIP is upstream's get_subnet_ip (agent/utils.py): the first of the
// host's addresses inside subnet, or "" when there is no subnet, it is /0,
// or none of addrs is in it (the caller then falls back to the RPC host).
func subnetIP(subnet *netip.Prefix, addrs []net.Addr) string {
	if subnet == nil || subnet.Bits() == 0 {
		return ""
	}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		if addr = addr.Unmap(); subnet.Contains(addr) {
			return addr.String()
		}
	}
	return ""
}

// detectBindHost does what upstream's auto_detect_agent_network does for
// an empty container.bind-host: it takes this host's address in etcd's
// config/network/subnet/container. Without a match bindHost falls back to
// the RPC host. The result only names the host (public_host, kernel
// host); kernel ports keep binding where container.bind-host says.
func (a *Agent) detectBindHost(overlay *etcdstore.Overlay) {
	if a.cfg.Container.BindHost != "" || overlay == nil || overlay.ContainerSubnet == nil {
		return
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		a.log.Warn().Err(err).Msg("cannot list this host's addresses to match config/network/subnet/container")
		return
	}
	a.subnetBindHost = subnetIP(overlay.ContainerSubnet, addrs)
	if a.subnetBindHost == "" {
		a.log.Warn().Str("subnet", overlay.ContainerSubnet.String()).Msg("no address of this host is in config/network/subnet/container; using the RPC host")
	}
}

// unspecified says whether host names no particular address ("", 0.0.0.0, ::).
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsUnspecified()
}

// bindHost is container.bind-host as upstream ends up with it: the
// configured one, else the address in the container subnet, else the RPC
// host. An unspecified address (0.0.0.0) names no host, so it is replaced
// too: the manager and users dial what this returns.
func (a *Agent) bindHost() string {
	switch {
	case !unspecified(a.cfg.Container.BindHost):
		return a.cfg.Container.BindHost
	case a.subnetBindHost != "":
		return a.subnetBindHost
	default:
		return a.nodeAddress().IP
	}
}

// kernelHost is the address the manager and app proxy reach kernel ports
// at: container.advertised-host, else the bind host.
func (a *Agent) kernelHost() string {
	if a.cfg.Container.AdvertisedHost != "" {
		return a.cfg.Container.AdvertisedHost
	}
	return a.bindHost()
}

// publicHost is the heartbeat's public_host (agent/agent.py
// _get_public_host): agent.public-host, else container.advertised-host,
// else the bind host. It is never empty; users' SSH/SFTP direct access
// dials it.
func (a *Agent) publicHost() string {
	if a.cfg.Agent.PublicHost != "" {
		return a.cfg.Agent.PublicHost
	}
	return a.kernelHost()
}
