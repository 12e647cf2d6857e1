package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/baiagent/baiagent/host/internal/adminapi"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestAcceleratorPluginsAsSubprocesses runs the rocm and tpu plugins as
// real processes under the plugin host, on fixture sysfs trees, and reads
// them back through `baiagent plugins list --json` and `inspect`.
func TestAcceleratorPluginsAsSubprocesses(t *testing.T) {
	root := testutil.ShortTempDir(t)
	bin := filepath.Join(root, "plugins")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	tools := t.TempDir()
	for _, name := range []string{"rocm", "tpu"} {
		testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/"+name+"/cmd/baiagent-plugin-"+name, bin, "baiagent-plugin-"+name)
	}
	unpack := func(plugin, archive string) string {
		tool := testutil.BuildBinary(t, "github.com/baiagent/baiagent/proto/cmd/sysfsfixture", tools, plugin+"-fixturetool")
		dir := filepath.Join(root, "hw-"+plugin)
		out, err := exec.Command(tool, filepath.Join(repoRoot(t), "plugins", plugin, "testdata", archive), dir).CombinedOutput()
		if err != nil {
			t.Fatalf("unpack %s: %v\n%s", archive, err, out)
		}
		return dir
	}
	rocmHW := unpack("rocm", "mi300x-8gpu-2numa.txtar")
	tpuHW := unpack("tpu", "tpu-v4-4chip.txtar")
	cfg := filepath.Join(root, "agent.toml")
	toml := fmt.Sprintf(`[etcd]
[agent]
backend = "docker"
plugin-dirs = [%q]
allow-compute-plugins = ["rocm", "ai.backend.accelerator.tpu"]
plugin-runtime-dir = %q
ipc-base-path = %q
[container]
[resource]
[plugins.rocm]
sysfs-root = %q
dev-root = %q
[plugins.tpu]
sysfs-root = %q
dev-root = %q
`, bin, filepath.Join(root, "run"), filepath.Join(root, "ipc"),
		filepath.Join(rocmHW, "sys"), filepath.Join(rocmHW, "dev"), filepath.Join(tpuHW, "sys"), filepath.Join(tpuHW, "dev"))
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := testEnv(t, nil)
	stdout, stderr, err := run(t, env, "plugins", "list", "--json", "-f", cfg)
	if err != nil {
		t.Fatalf("plugins list: %v\n%s", err, stderr)
	}
	var statuses []pluginhost.Status
	if err := json.Unmarshal([]byte(stdout), &statuses); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	cases := []struct {
		description string
		plugin      string
		slot        string
		devices     int
	}{
		{description: "8 MI300X with two of them split in two partitions", plugin: "rocm", slot: "rocm.device", devices: 10},
		{description: "a 4-chip TPU v4 host, allowed by upstream's module path", plugin: "tpu", slot: "tpu.device", devices: 4},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			var s *pluginhost.Status
			for i := range statuses {
				if statuses[i].Name == tc.plugin {
					s = &statuses[i]
				}
			}
			if s == nil || s.State != pluginhost.StateRunning || s.DeviceCount != tc.devices ||
				len(s.Slots) != 1 || s.Slots[0].Name != tc.slot || s.Slots[0].Capacity.IntPart() != int64(tc.devices) {
				t.Fatalf("unexpected status %+v", s)
			}
			out, _, err := run(t, env, "plugins", "inspect", "--json", tc.plugin, "-f", cfg)
			var detail adminapi.PluginDetail
			if err != nil || json.Unmarshal([]byte(out), &detail) != nil || len(detail.Devices) != tc.devices {
				t.Fatalf("inspect: %v\n%s", err, out)
			}
			numa := map[int]bool{}
			for _, d := range detail.Devices {
				numa[d.NUMANode] = true
				if d.Model == "" || d.PCIBusID == "" {
					t.Fatalf("device without model or PCI address: %+v", d)
				}
			}
			if len(numa) != 2 {
				t.Fatalf("devices on NUMA nodes %v, want two nodes", numa)
			}
		})
	}
}
