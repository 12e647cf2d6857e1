package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
)

func TestRPCCommands(t *testing.T) {
	srv, err := rpcserver.New(rpcserver.Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-cli", PortRangeMin: 30000, PortRangeMax: 30010, Logger: zerolog.Nop()}, rpcserver.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	cases := []struct {
		description string
		args        []string
		wantOut     string
		wantErr     string
	}{
		{"ping", []string{"rpc", "ping", "--addr", srv.Endpoint()}, "pong from", ""},
		{"call with args", []string{"rpc", "call", "ping", "--addr", srv.Endpoint(), "--args", `["hello"]`}, `"hello"`, ""},
		{"call with kwargs", []string{"rpc", "call", "get_local_config", "--addr", srv.Endpoint(), "--kwargs", `{"agent_id":"i-cli"}`}, `"watcher": {}`, ""},
		{"failure is an error", []string{"rpc", "call", "nope", "--addr", srv.Endpoint()}, "", "UnknownMethodError"},
		{"bad JSON", []string{"rpc", "call", "ping", "--addr", srv.Endpoint(), "--args", `[`}, "", "--args"},
		{"unreachable", []string{"rpc", "ping", "--addr", "tcp://127.0.0.1:1", "--handshake-timeout", (200 * time.Millisecond).String()}, "", "PONG"},
	}
	for _, tc := range cases {
		root := NewRootCommand(config.Env{})
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(tc.args)
		err := root.Execute()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want it to mention %q", tc.description, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), tc.wantOut) {
			t.Errorf("%s: out %q, err %v; want %q", tc.description, out.String(), err, tc.wantOut)
		}
	}
}
