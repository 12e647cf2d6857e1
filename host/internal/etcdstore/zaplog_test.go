package etcdstore

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

func TestBenign(t *testing.T) {
	tests := []struct {
		description string
		msg, err    string
		closing     bool
		want        bool
	}{
		{"first start: storage version before the first term", "failed to update storage version",
			"cannot detect storage schema version: missing term information", false, true},
		{"first start: schema version before the first term", "Failed to detect schema version", "missing term information", false, true},
		{"storage version failing for another reason", "failed to update storage version",
			`cannot create migration plan: version "3.5.0" is not supported`, false, false},
		{"missing term information under another message", "some other failure", "missing term information", false, false},
		{"listener closed while the member shuts down", "setting up serving from embedded etcd failed.", "mux: server closed", true, true},
		{"accept on a closed listener while shutting down", "stopping insecure grpc server due to error",
			"accept tcp 127.0.0.1:2379: use of closed network connection", true, true},
		{"listener closed while running", "setting up serving from embedded etcd failed.", "http: Server closed", false, false},
		{"another error while shutting down", "failed to save snapshot", "no space left on device", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			if got := benign(tt.msg, tt.err, tt.closing); got != tt.want {
				t.Errorf("benign(%q, %q, closing=%v) = %v, want %v", tt.msg, tt.err, tt.closing, got, tt.want)
			}
		})
	}
}

// jsonLines parses the JSON log lines in out.
func jsonLines(out string) []map[string]any {
	var lines []map[string]any
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// An embedded member that starts fresh, stops, starts again on its data and
// stops logs no error: operators read ERR as something to act on.
func TestEmbeddedLogsNoErrorsWhenHealthy(t *testing.T) {
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs).Level(zerolog.InfoLevel)
	dir := filepath.Join(t.TempDir(), "etcd")
	listen := freeListenAddr(t)
	ctx := context.Background()
	for round := range 2 {
		e, err := StartEmbedded(ctx, dir, listen, log)
		if err != nil {
			t.Fatalf("start %d: %v", round+1, err)
		}
		c := connectTest(t, e.Endpoint(), "ns", "i-a")
		if err := c.Put(ctx, ScopeGlobal, "config/round", "x"); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		e.Close()
	}
	lines := jsonLines(logs.String())
	if len(lines) == 0 {
		t.Fatal("no log lines captured")
	}
	for _, l := range lines {
		if l["level"] == "error" {
			t.Errorf("error logged by a healthy member: %v", l)
		}
	}
}
