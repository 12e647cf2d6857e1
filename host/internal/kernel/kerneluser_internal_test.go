package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
)

// userOf and userEnv follow upstream's create_kernel (agent/agent.py:
// LOCAL_USER_ID, LOCAL_GROUP_ID, update_additional_gids).
func TestKernelUserOf(t *testing.T) {
	m := &Manager{uid: 1000, gid: 1001}
	i := func(v int) *int { return &v }
	cases := []struct {
		description string
		req         CreateRequest
		labels      map[string]string
		env         map[string]string
		plugin      []string
		wantEnv     map[string]string
	}{
		{description: "the agent's kernel-uid/gid when the request has none",
			wantEnv: map[string]string{"LOCAL_USER_ID": "1000", "LOCAL_GROUP_ID": "1001"}},
		{description: "the request's ids and supplementary gids",
			req:     CreateRequest{UID: i(2000), MainGID: i(3000), SupplementaryGIDs: []int{4000}},
			wantEnv: map[string]string{"LOCAL_USER_ID": "2000", "LOCAL_GROUP_ID": "3000", "ADDITIONAL_GIDS": "4000"}},
		{description: "uid-match image adds the agent's kernel-gid when main_gid overrides it",
			req: CreateRequest{MainGID: i(3000)}, labels: map[string]string{ImageLabelFeatures: "batch uid-match"},
			wantEnv: map[string]string{"LOCAL_USER_ID": "1000", "LOCAL_GROUP_ID": "3000", "ADDITIONAL_GIDS": "1001"}},
		{description: "merged with the environ's and the plugins' groups, sorted, once each",
			req: CreateRequest{SupplementaryGIDs: []int{44, 4000}}, env: map[string]string{"ADDITIONAL_GIDS": "4000,7"}, plugin: []string{"44", "video"},
			wantEnv: map[string]string{"LOCAL_USER_ID": "1000", "LOCAL_GROUP_ID": "1001", "ADDITIONAL_GIDS": "7,44,4000"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			userEnv(env, m.userOf(tc.req, tc.labels), tc.plugin)
			for k, v := range tc.wantEnv {
				if env[k] != v {
					t.Errorf("%s = %q, want %q", k, env[k], v)
				}
			}
			if _, ok := tc.wantEnv["ADDITIONAL_GIDS"]; !ok && env["ADDITIONAL_GIDS"] != "" {
				t.Errorf("ADDITIONAL_GIDS = %q, want none", env["ADDITIONAL_GIDS"])
			}
		})
	}
}

// Dotfiles as upstream's prepare_container (agent/docker/agent.py 972-1003).
func TestWriteDotfiles(t *testing.T) {
	cases := []struct {
		description string
		files       []Dotfile
		wantFile    string // relative to the scratch dir
		wantData    string
		wantErr     string
	}{
		{description: "relative path in work, newline added", files: []Dotfile{{Path: ".vimrc", Perm: "644", Data: "set nu"}}, wantFile: "work/.vimrc", wantData: "set nu\n"},
		{description: "/home/work path lands in work", files: []Dotfile{{Path: "/home/work/.profile", Perm: "600", Data: "x\n"}}, wantFile: "work/.profile", wantData: "x\n"},
		{description: "a later dotfile overwrites an earlier one", files: []Dotfile{{Path: "a", Perm: "644", Data: "1"}, {Path: "a", Perm: "644", Data: "2"}}, wantFile: "work/a", wantData: "2\n"},
		{description: "nested dirs made", files: []Dotfile{{Path: ".config/app/rc", Perm: "755", Data: "z"}}, wantFile: "work/.config/app/rc", wantData: "z\n"},
		{description: "another absolute path is refused", files: []Dotfile{{Path: "/etc/passwd", Perm: "644", Data: "x"}}, wantErr: "only paths under /home/"},
		{description: "escaping the scratch dir is refused", files: []Dotfile{{Path: "../../x", Perm: "644", Data: "x"}}, wantErr: "leaves"},
		{description: "escaping via /home/.. is refused", files: []Dotfile{{Path: "/home/../../x", Perm: "644", Data: "x"}}, wantErr: "leaves"},
		{description: "a perm that is not octal is refused", files: []Dotfile{{Path: "a", Perm: "rw", Data: "x"}}, wantErr: "octal"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			base := t.TempDir()
			dirs := scratch.Dirs{Base: base, Work: filepath.Join(base, "work"), Config: filepath.Join(base, "config")}
			if err := os.MkdirAll(dirs.Work, 0o755); err != nil {
				t.Fatal(err)
			}
			err := writeDotfiles(dirs, tc.files, kernelUser{uid: os.Getuid(), gid: os.Getgid()})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(base, tc.wantFile))
			if err != nil || string(raw) != tc.wantData {
				t.Fatalf("%s: %q, %v; want %q", tc.wantFile, raw, err, tc.wantData)
			}
			if st, _ := os.Stat(dirs.Work); st.Mode().Perm() != 0o755 {
				t.Errorf("the work dir's mode changed to %v", st.Mode().Perm())
			}
		})
	}
}

func TestWriteBootstrapOnlyWithAScript(t *testing.T) {
	base := t.TempDir()
	dirs := scratch.Dirs{Base: base, Work: base}
	u := kernelUser{uid: os.Getuid(), gid: os.Getgid()}
	if err := writeBootstrap(dirs, "", u); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("an empty script wrote %v", entries)
	}
	if err := writeBootstrap(dirs, "echo hi\n", u); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(filepath.Join(base, "bootstrap.sh")); string(raw) != "echo hi\n" {
		t.Fatalf("bootstrap.sh %q", raw)
	}
}
