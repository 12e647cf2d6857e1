//go:build linux && cgo

package cuda

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// TestRealGPUCudaMemMatchesNvidiaSmi is issue 19's hardware check: on a
// machine with an NVIDIA driver, the plugin's node cuda_mem for each GPU
// equals nvidia-smi's memory.used within 1 MiB (nvidia-smi rounds to
// MiB). Without nvidia-smi there is no GPU to compare against, so it skips;
// scripts/gpu-check.sh runs it on the device machine.
func TestRealGPUCudaMemMatchesNvidiaSmi(t *testing.T) {
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		t.Skip("no nvidia-smi: no NVIDIA GPU to compare against")
	}
	// The real driver and the real sysfs: nothing from the fixtures.
	p := configuredPlugin(t, map[string]any{}, dockerAgent())
	metrics, err := p.NodeMetrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), smi, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits").Output()
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	used := parseSmiUsed(t, out)
	if len(used) == 0 {
		t.Fatalf("nvidia-smi listed no GPU: %q", out)
	}
	var mem map[string]decimal.Decimal
	for _, m := range metrics {
		if m.Key == "cuda_mem" {
			mem = map[string]decimal.Decimal{}
			for dev, v := range m.PerDevice {
				mem[dev] = v.Value
			}
		}
	}
	if mem == nil {
		t.Fatalf("no cuda_mem in %+v", metrics)
	}
	mib := decimal.NewFromInt(1 << 20)
	for idx, smiMiB := range used {
		ours, ok := mem[idx]
		if !ok {
			t.Errorf("GPU %s: nvidia-smi lists it, cuda_mem has no device %s (has %v)", idx, idx, mem)
			continue
		}
		diff := ours.Sub(decimal.NewFromInt(smiMiB).Mul(mib)).Abs()
		t.Logf("GPU %s: cuda_mem %s bytes (%s MiB), nvidia-smi %d MiB", idx, ours, ours.Div(mib).StringFixed(2), smiMiB)
		if diff.GreaterThan(mib) {
			t.Errorf("GPU %s: cuda_mem %s bytes differs from nvidia-smi's %d MiB by %s bytes (> 1 MiB)", idx, ours, smiMiB, diff)
		}
	}
}

// parseSmiUsed reads nvidia-smi's "index, memory.used" CSV (MiB) by index.
func parseSmiUsed(t *testing.T, out []byte) map[string]int64 {
	t.Helper()
	used := map[string]int64{}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		idx, val, ok := strings.Cut(string(line), ",")
		if !ok {
			t.Fatalf("nvidia-smi line %q: want index, memory.used", line)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			t.Fatalf("nvidia-smi line %q: %v", line, err)
		}
		used[strings.TrimSpace(idx)] = n
	}
	return used
}
