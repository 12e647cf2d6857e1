package cuda_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/baiagent/baiagent/proto/sdk"
)

// syncBuffer is a bytes.Buffer safe for go-plugin's logging goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPluginProcessStopsWithinASecond runs the real plugin binary as the
// agent does (go-plugin, AutoMTLS) over fake GPUs whose event wait behaves
// like NVML's, and stops it as the agent does. go-plugin SIGKILLs a plugin
// that has not exited 2 s after Shutdown; it must exit on its own within 1 s.
func TestPluginProcessStopsWithinASecond(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the plugin binary")
	}
	bin := filepath.Join(t.TempDir(), "baiagent-plugin-cuda")
	build := exec.Command("go", "build", "-o", bin, "./cmd/baiagent-plugin-cuda")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	fixture, err := os.ReadFile("../../configs/fixtures/cuda-2xA100.toml")
	if err != nil {
		t.Fatal(err)
	}
	sysfs, err := filepath.Abs("../../configs/fixtures/sysfs-2xA100")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		description string
		eventWait   string
		stopAfter   time.Duration
	}{
		{"stopped 0.5 s after start, event wait blocks like nvmlEventSetWait", "nvml", 500 * time.Millisecond},
		{"stopped 3 s after start, event wait blocks like nvmlEventSetWait", "nvml", 3 * time.Second},
		{"stopped 0.5 s after start, event wait never returns", "hang", 500 * time.Millisecond},
		{"stopped 3 s after start, event wait never returns", "hang", 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			devices := filepath.Join(dir, "gpus.toml")
			spec := append([]byte("event_wait = \""+tc.eventWait+"\"\n"), fixture...)
			if err := os.WriteFile(devices, spec, 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			pc := plugin.NewClient(&plugin.ClientConfig{
				HandshakeConfig:  sdk.Handshake(),
				VersionedPlugins: sdk.PluginSets(),
				Cmd:              exec.Command(bin),
				AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
				AutoMTLS:         true,
				StartTimeout:     20 * time.Second,
				Logger:           hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
			})
			t.Cleanup(pc.Kill)
			cp, err := pc.Client()
			if err != nil {
				t.Fatalf("start: %v\n%s", err, logs)
			}
			raw, err := cp.Dispense(sdk.PluginName)
			if err != nil {
				t.Fatal(err)
			}
			client := raw.(*sdk.Client)
			start := time.Now()
			err = client.Configure(context.Background(), sdk.ConfigureRequest{
				APIVersion: sdk.APIVersion,
				Config:     map[string]any{"fake-devices": devices, "sysfs-root": sysfs},
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Until(start.Add(tc.stopAfter)))

			stopAt := time.Now()
			pc.Kill()
			took := time.Since(stopAt)
			if !pc.Exited() {
				t.Fatal("plugin still running after Kill")
			}
			if strings.Contains(logs.String(), "failed to exit gracefully") || took > time.Second {
				t.Fatalf("plugin took %s to exit (go-plugin kills it at 2 s); logs:\n%s", took, logs)
			}
			t.Logf("exited %s after Shutdown", took.Round(time.Millisecond))
		})
	}
}
