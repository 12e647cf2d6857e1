package sdk

import (
	"testing"

	"github.com/hashicorp/go-plugin"
)

// TestClient serves impl in-process over a real gRPC connection (go-plugin's
// test harness) and returns the agent-side client. Everything is closed when
// the test ends. Use it to test a plugin's wire behaviour without building a
// binary.
func TestClient(t testing.TB, impl Plugin) *Client {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		PluginName: &GRPCPlugin{Impl: impl},
	})
	t.Cleanup(func() {
		// Stop the server first: closing the client first makes the
		// plugin's controller stop the server from a handler goroutine
		// while Stop runs here too, and go-plugin's Stop is not safe for that.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatalf("dispense %s: %v", PluginName, err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *sdk.Client", raw)
	}
	return c
}
