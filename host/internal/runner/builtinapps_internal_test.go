package runner

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPythonBuiltinApp pins upstream's python runtime apps
// (kernel/python/__init__.py start_service, 26.8.1): their command lines,
// the service port, and jupyter's config file.
func TestPythonBuiltinApp(t *testing.T) {
	cases := []struct {
		description string
		name        string
		port        int
		want        []string // "{cfg}" stands for jupyter's config file
		wantDir     string   // relative to the work dir; "" is the work dir
		notBuiltin  bool
	}{
		{description: "jupyter runs the notebook module with its config", name: "jupyter", port: 8091,
			want: []string{"/usr/bin/python3", "-m", "notebook", "--no-browser", "--config", "{cfg}"}},
		{description: "jupyterlab runs the jupyterlab module with the same config", name: "jupyterlab", port: 8090,
			want: []string{"/usr/bin/python3", "-m", "jupyterlab", "--no-browser", "--config", "{cfg}"}},
		{description: "ipython", name: "ipython", port: 0, want: []string{"/usr/bin/python3", "-m", "IPython"}},
		{description: "digits", name: "digits", port: 5000, want: []string{"/usr/bin/python3", "-m", "digits"}},
		{description: "tensorboard on all interfaces and the service port, logs in work/logs", name: "tensorboard", port: 6006,
			want: []string{"/usr/bin/python3", "-m", "tensorboard.main", "--logdir", "{work}/logs", "--host", "0.0.0.0",
				"--port", "6006", "--debugger_port", "6064"}},
		{description: "spectravis serves work/spectravis on 8000 whatever the port", name: "spectravis", port: 9000,
			want: []string{"/usr/bin/python3", "-m", "http.server", "8000"}, wantDir: "spectravis"},
		{description: "sftp on the service port", name: "sftp", port: 8022,
			want: []string{"/usr/bin/python3", "-m", "sftpserver", "--port", "8022"}},
		{description: "any other name is not built in", name: "vscode", port: 8180, notBuiltin: true},
		{description: "names are case-sensitive", name: "Jupyter", port: 8091, notBuiltin: true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			work, tmp := t.TempDir(), t.TempDir()
			app, ok, err := pythonBuiltinApp(builtinAppEnv{runtimePath: "/usr/bin/python3", tempDir: tmp, workDir: work}, tc.name, tc.port)
			if err != nil {
				t.Fatal(err)
			}
			if ok == tc.notBuiltin {
				t.Fatalf("built in: %v, want %v", ok, !tc.notBuiltin)
			}
			if !ok {
				return
			}
			want := slices.Clone(tc.want)
			for i, w := range want {
				want[i] = strings.ReplaceAll(w, "{work}", work)
				if w == "{cfg}" {
					want[i] = app.argv[i]
					if filepath.Dir(app.argv[i]) != tmp || !strings.HasSuffix(app.argv[i], ".py") {
						t.Errorf("config file %s, want a .py file in %s", app.argv[i], tmp)
					}
					body, err := os.ReadFile(app.argv[i])
					if err != nil {
						t.Fatal(err)
					}
					wantBody := "c.NotebookApp.allow_root = True\nc.NotebookApp.ip = \"0.0.0.0\"\nc.NotebookApp.port = " +
						itoa(tc.port) + "\nc.NotebookApp.token = \"\"\nc.FileContentsManager.delete_to_trash = False\n" +
						"c.NotebookApp.tornado_settings = {'ws_ping_interval': 10000}\n"
					if string(body) != wantBody {
						t.Errorf("config:\n%s\nwant:\n%s", body, wantBody)
					}
				}
			}
			if !slices.Equal(app.argv, want) {
				t.Errorf("argv %q, want %q", app.argv, want)
			}
			wantDir := ""
			if tc.wantDir != "" {
				wantDir = filepath.Join(work, tc.wantDir)
			}
			if app.dir != wantDir {
				t.Errorf("dir %q, want %q", app.dir, wantDir)
			}
			if tc.name == "tensorboard" {
				if st, err := os.Stat(filepath.Join(work, "logs")); err != nil || !st.IsDir() {
					t.Errorf("work/logs not made: %v", err)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
