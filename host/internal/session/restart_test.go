package session

import (
	"slices"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// TestRestartUpdateBlockServicePorts: upstream's restart_kernel
// (agent/agent.py, 26.8.1) merges updated_config over the stored config
// as {**existing, **updated}, so an internal_data it carries replaces the
// stored one whole, and start_container (agent/docker/agent.py) reads
// internal_data.get("block_service_ports", False): an internal_data
// without the key clears the flag, and an updated_config without
// internal_data keeps it.
func TestRestartUpdateBlockServicePorts(t *testing.T) {
	for _, tc := range []struct {
		description string
		stored      bool
		sent        []string
		internal    sessionapi.InternalData
		want        bool
	}{
		{"no internal_data keeps it set", true, []string{"environ"}, sessionapi.InternalData{}, true},
		{"no internal_data keeps it unset", false, nil, sessionapi.InternalData{BlockServicePorts: true}, false},
		{"internal_data without the key clears it", true, []string{"internal_data"}, sessionapi.InternalData{Sudo: true}, false},
		{"internal_data with the key sets it", false, []string{"internal_data"}, sessionapi.InternalData{BlockServicePorts: true}, true},
	} {
		t.Run(tc.description, func(t *testing.T) {
			present := func(key string) bool { return slices.Contains(tc.sent, key) }
			req := kernel.CreateRequest{BlockServicePorts: tc.stored}
			RestartUpdate(sessionapi.KernelCreationConfig{UID: -1, MainGID: -1, Internal: tc.internal}, present)(&req)
			if req.BlockServicePorts != tc.want {
				t.Errorf("BlockServicePorts %v, want %v", req.BlockServicePorts, tc.want)
			}
		})
	}
}
