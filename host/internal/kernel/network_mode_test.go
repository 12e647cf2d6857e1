package kernel

import (
	"errors"
	"slices"
	"testing"
)

// TestNetworkModeAndClusterHosts pins how a kernel reads cluster_info's
// network mode and cluster_ssh_port_mapping (agent/docker/agent.py
// apply_network and start_container, agent/docker/intrinsic.py
// HostNetworkPlugin.join_network).
func TestNetworkModeAndClusterHosts(t *testing.T) {
	for _, tc := range []struct {
		description string
		mode        string
		wantErr     bool
	}{
		{"no mode: Docker's default bridge", "", false},
		{"bridge", "bridge", false},
		{"host", "host", false},
		{"overlay is a plugin this agent does not load", "overlay", true},
		{"a typo", "Host", true},
	} {
		err := CheckNetworkMode(tc.mode)
		if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrNetworkMode)) {
			t.Errorf("%s: CheckNetworkMode(%q) = %v", tc.description, tc.mode, err)
		}
	}
	hosts := []ClusterHost{{"sub1", "10.0.0.2", 30002}, {"main1", "10.0.0.1", 30001}, {"node-k2", "10.0.0.3", 30003}}
	for _, tc := range []struct {
		description string
		req         CreateRequest
		wantPort    int
		wantOK      bool
	}{
		{"by cluster hostname", CreateRequest{ClusterHostname: "main1", KernelID: "k1", ClusterHosts: hosts}, 30001, true},
		{"by node-<kernel id>, as the 26.8 manager keys it", CreateRequest{ClusterHostname: "sub2", KernelID: "k2", ClusterHosts: hosts}, 30003, true},
		{"not in the mapping", CreateRequest{ClusterHostname: "sub9", KernelID: "k9", ClusterHosts: hosts}, 0, false},
		{"no mapping", CreateRequest{ClusterHostname: "main1", KernelID: "k1"}, 0, false},
	} {
		if port, ok := tc.req.sshdHostPort(); port != tc.wantPort || ok != tc.wantOK {
			t.Errorf("%s: sshdHostPort = %d, %v; want %d, %v", tc.description, port, ok, tc.wantPort, tc.wantOK)
		}
	}
	if got, want := extraHosts(hosts), []string{"main1:10.0.0.1", "node-k2:10.0.0.3", "sub1:10.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("extraHosts = %v, want %v", got, want)
	}
}
