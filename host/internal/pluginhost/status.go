package pluginhost

import (
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/proto/sdk"
)

// State is where a plugin stands, as `baiagent plugins list` shows it.
type State string

const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateFailed     State = "failed"
	StateBlocked    State = "blocked"
	StateNotAllowed State = "not allowed"
	StateStopped    State = "stopped"
)

// SlotInfo is one slot a plugin provides and its total capacity.
type SlotInfo struct {
	Name     string          `json:"name"`
	Kind     string          `json:"kind"`
	Capacity decimal.Decimal `json:"capacity"`
	Devices  int             `json:"devices"`
}

// Status is a snapshot of one plugin.
type Status struct {
	Name        string     `json:"name"`
	Path        string     `json:"path"`
	Keys        []string   `json:"keys"`
	Version     string     `json:"version"`
	APIVersion  string     `json:"api_version"`
	Slots       []SlotInfo `json:"slots"`
	DeviceCount int        `json:"device_count"`
	State       State      `json:"state"`
	Reason      string     `json:"reason,omitempty"`
	Restarts    int        `json:"restarts"`
	PID         int        `json:"pid,omitempty"`
}

// slotInfos sums device capacities per slot, in the order the plugin
// describes its slots.
func slotInfos(desc sdk.Description, devices []sdk.Device) []SlotInfo {
	var out []SlotInfo
	for _, kind := range desc.Kinds {
		for _, st := range kind.SlotTypes {
			info := SlotInfo{Name: st.Name, Kind: st.Kind.String(), Capacity: decimal.Zero}
			for _, d := range devices {
				if d.SlotName == st.Name {
					info.Capacity = info.Capacity.Add(d.Capacity)
					info.Devices++
				}
			}
			out = append(out, info)
		}
	}
	return out
}
