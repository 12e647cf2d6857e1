package cuda

import (
	"context"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk"
)

// BenchmarkNodeMetrics is one metrics poll over the 8-GPU fake, directly and
// through the gRPC client the agent uses.
func BenchmarkNodeMetrics(b *testing.B) {
	p := configuredPlugin(b, fixtureConfig(nil), dockerAgent())
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.NodeMetrics(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc", func(b *testing.B) {
		client := sdk.TestClient(b, p)
		for b.Loop() {
			if _, err := client.NodeMetrics(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
