package pluginverify

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func verify(t *testing.T, path string, config map[string]any, workDir string) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report, err := Run(ctx, Options{Path: path, Config: config, WorkDir: workDir, RuntimeDir: testutil.ShortTempDir(t),
		StartTimeout: 30 * time.Second, CallTimeout: 10 * time.Second, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report.Write(&out)
	t.Logf("%s", out.String())
	return report
}

// TestOurPluginsConform runs the kit against the four plugins this repository
// ships, each on the fixture that makes it see hardware on any machine.
func TestOurPluginsConform(t *testing.T) {
	root := repoRoot()
	bin := testutil.ShortTempDir(t)
	unpack := func(plugin, archive string) string {
		tool := testutil.BuildBinary(t, "github.com/baiagent/baiagent/proto/cmd/sysfsfixture", t.TempDir(), "sysfsfixture")
		dir := filepath.Join(t.TempDir(), plugin)
		if out, err := exec.Command(tool, filepath.Join(root, "plugins", plugin, "testdata", archive), dir).CombinedOutput(); err != nil {
			t.Fatalf("unpack %s: %v\n%s", archive, err, out)
		}
		return dir
	}
	rocm := unpack("rocm", "mi300x-8gpu-2numa.txtar")
	tpu := unpack("tpu", "tpu-v4-4chip.txtar")
	cases := []struct {
		description string
		plugin      string
		config      map[string]any
	}{
		{description: "cpu and mem on this host's /proc and cgroups", plugin: "cpu"},
		{description: "cuda on the fake 2xA100 driver, relative paths from the repository root", plugin: "cuda",
			config: map[string]any{"fake-devices": "configs/fixtures/cuda-2xA100.toml", "sysfs-root": "configs/fixtures/sysfs-2xA100"}},
		{description: "rocm on an 8xMI300X sysfs fixture", plugin: "rocm",
			config: map[string]any{"sysfs-root": filepath.Join(rocm, "sys"), "dev-root": filepath.Join(rocm, "dev")}},
		{description: "tpu on a 4-chip v4 sysfs fixture", plugin: "tpu",
			config: map[string]any{"sysfs-root": filepath.Join(tpu, "sys"), "dev-root": filepath.Join(tpu, "dev")}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			path := testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/"+tc.plugin+"/cmd/baiagent-plugin-"+tc.plugin,
				bin, pluginhost.ExecutablePrefix+tc.plugin)
			report := verify(t, path, tc.config, root)
			if failed := report.Failed(); len(failed) > 0 {
				t.Fatalf("failed checks %v", failed)
			}
			if len(report.Latencies) == 0 {
				t.Fatal("no latencies reported")
			}
		})
	}
}

// TestBrokenPluginsFailByName runs the kit against the plugin host's fake
// plugin, whole and broken one way at a time.
func TestBrokenPluginsFailByName(t *testing.T) {
	bin := testutil.ShortTempDir(t)
	build := testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/internal/pluginhost/testdata/fakeplugin", t.TempDir(), "fakeplugin")
	cases := []struct {
		description string
		name        string
		wantFailed  []string
	}{
		{description: "the whole fake passes", name: "fake"},
		{description: "a plugin that ignores Shutdown", name: "noshutdown", wantFailed: []string{CheckShutdown}},
		{description: "a plugin whose Restore disagrees with Prepare", name: "badrestore", wantFailed: []string{CheckPrepareRestore}},
		{description: "a plugin whose Configure accepts an unknown key", name: "openconfig", wantFailed: []string{CheckUnknownKey}},
		{description: "a plugin answering NOT_SERVING", name: "notserving", wantFailed: []string{CheckHealth}},
		{description: "a plugin for another API major", name: "apiv2",
			wantFailed: append([]string{CheckHandshake}, afterHandshake...)},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			path := testutil.CopyExecutable(t, build, bin, pluginhost.ExecutablePrefix+tc.name)
			report := verify(t, path, nil, "")
			if failed := report.Failed(); !slices.Equal(failed, tc.wantFailed) {
				t.Fatalf("failed checks %v, want %v", failed, tc.wantFailed)
			}
		})
	}
}
