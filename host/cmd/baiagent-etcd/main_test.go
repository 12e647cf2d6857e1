package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/etcdproc"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

func TestRunRefusesBadArguments(t *testing.T) {
	tests := []struct {
		description string
		args        []string
		want        string
	}{
		{"no data dir", []string{"--listen", "127.0.0.1:2379"}, "--data-dir is required"},
		{"no listen address", []string{"--data-dir", "/tmp/x"}, `--listen ""`},
		{"listen address without a port", []string{"--data-dir", "/tmp/x", "--listen", "127.0.0.1"}, `--listen "127.0.0.1"`},
		{"unknown flag", []string{"--peer", "x"}, "usage: baiagent-etcd"},
	}
	for _, tt := range tests {
		t.Run(tt.description, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, strings.NewReader(""), &out, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run(%q) = %v, want an error saying %q", tt.args, err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on stdout, which the agent reads as ready", out.String())
			}
		})
	}
}

// With stdin already ended the member starts, says so on stdout and
// stops at once, as it does when its agent is gone.
func TestRunStopsWhenStdinEnds(t *testing.T) {
	listen := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t, "127.0.0.1"))
	var out bytes.Buffer
	if err := run([]string{"--data-dir", filepath.Join(t.TempDir(), "etcd"), "--listen", listen}, strings.NewReader(""), &out, zerolog.Nop()); err != nil {
		t.Fatalf("run: %v", err)
	}
	var ready etcdproc.Ready
	if err := json.Unmarshal(out.Bytes(), &ready); err != nil || ready.Endpoint != listen {
		t.Fatalf("stdout %q: want the ready line with endpoint %s (%v)", out.String(), listen, err)
	}
}
