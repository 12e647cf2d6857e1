package pluginverify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// pluginPath is the PATH the agent gives a plugin: the example's
// "#!/usr/bin/env python3" finds its interpreter there.
const pluginPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// TestPythonExampleConforms generates the example's stubs as its README
// says and runs the kit against examples/python-plugin. It needs Debian's
// python3-grpcio, python3-grpc-tools and python3-cryptography (.ci/run
// installs them).
func TestPythonExampleConforms(t *testing.T) {
	probe := exec.Command("/usr/bin/env", "python3", "-c", "import grpc, grpc_tools.protoc, cryptography")
	probe.Env = []string{pluginPath}
	if out, err := probe.CombinedOutput(); err != nil {
		testutil.Need(t, fmt.Sprintf("python3 on the plugin PATH lacks grpcio, grpc-tools or cryptography (apt-get install python3-grpcio python3-grpc-tools python3-cryptography; .ci/run installs them): %v\n%s", err, out))
	}
	root := repoRoot()
	dir := testutil.ShortTempDir(t)
	for _, name := range []string{"baiagent-plugin-demo", "generate.sh"} {
		src := filepath.Join(root, "examples", "python-plugin", name)
		if _, err := os.Stat(src); err != nil {
			t.Fatal(err)
		}
		testutil.CopyExecutable(t, src, dir, name)
	}
	gen := exec.Command(filepath.Join(dir, "generate.sh"), filepath.Join(root, "proto"), filepath.Join(dir, "gen"))
	gen.Env = []string{pluginPath}
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generate stubs: %v\n%s", err, out)
	}
	cases := []struct {
		description string
		config      map[string]any
	}{
		{description: "without a [plugins.demo] table (config_json null)"},
		{description: "with a table of three devices", config: map[string]any{"devices": 3}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			report := verify(t, filepath.Join(dir, "baiagent-plugin-demo"), tc.config, "")
			if failed := report.Failed(); len(failed) > 0 {
				t.Fatalf("failed checks %v", failed)
			}
		})
	}
}
