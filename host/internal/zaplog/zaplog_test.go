package zaplog

import (
	"testing"
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
