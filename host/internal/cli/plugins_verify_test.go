package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestPluginsVerify runs `baiagent plugins verify` on the plugin host's fake
// plugin: whole with an agent.toml, and broken, where it must fail naming
// the check.
func TestPluginsVerify(t *testing.T) {
	bin := testutil.ShortTempDir(t)
	build := testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/internal/pluginhost/testdata/fakeplugin", t.TempDir(), "fakeplugin")
	cfgDir := t.TempDir()
	agentToml := filepath.Join(cfgDir, "agent.toml")
	if err := os.WriteFile(agentToml, []byte("[agent]\n[plugins.fake]\nnetwork = \"verify-net\"\n[plugins.other]\nx = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(cfgDir, "table.toml")
	if err := os.WriteFile(table, []byte("network = \"verify-net\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		description string
		plugin      string
		args        []string
		wantErr     string
	}{
		{description: "the fake passes with its table from an agent.toml", plugin: "fake", args: []string{"--config", agentToml}},
		{description: "the fake passes with its table alone", plugin: "fake", args: []string{"--config", table}},
		{description: "an agent.toml without the plugin's table is refused", plugin: "badrestore", args: []string{"--config", agentToml},
			wantErr: "no [plugins.badrestore]"},
		{description: "a plugin whose Restore disagrees with Prepare", plugin: "badrestore", wantErr: "failed checks: prepare-restore"},
		{description: "a plugin accepting unknown keys", plugin: "openconfig", wantErr: "failed checks: configure-unknown-key"},
		{description: "a plugin ignoring Shutdown", plugin: "noshutdown", wantErr: "failed checks: shutdown"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			path := testutil.CopyExecutable(t, build, bin, pluginhost.ExecutablePrefix+tc.plugin)
			stdout, stderr, err := run(t, testEnv(t, nil), append([]string{"plugins", "verify", path}, tc.args...)...)
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(stdout, "PASS  prepare-restore") {
					t.Fatalf("verify: %v\n%s\n%s", err, stdout, stderr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, stdout)
			}
		})
	}
}
