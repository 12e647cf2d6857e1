package cli

import (
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
)

// gcPercent reads the runtime's current setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestApplyGCPercent(t *testing.T) {
	defer debug.SetGCPercent(gcPercent())
	tests := []struct {
		description string
		vars        map[string]string
		want        int
	}{
		{"GOGC unset: the agent's own setting", nil, serverGCPercent},
		// The runtime read GOGC at start; the agent leaves it alone.
		{"GOGC set by the operator wins", map[string]string{"GOGC": "200"}, 77},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			debug.SetGCPercent(77)
			env := config.Env{Lookup: func(k string) (string, bool) { v, ok := tt.vars[k]; return v, ok }}
			applyGCPercent(env, zerolog.Nop())
			if got := gcPercent(); got != tt.want {
				t.Errorf("GC percent %d, want %d", got, tt.want)
			}
		})
	}
}
