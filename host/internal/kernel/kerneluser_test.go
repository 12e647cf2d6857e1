package kernel_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// wantIdentity checks `id` output (or /proc status lines) for the kernel
// user of TestKernelUser.
func wantIdentity(t *testing.T, where, out string) {
	t.Helper()
	if !strings.Contains(out, "uid=2000(work) gid=3000") || !strings.Contains(out, "4000") {
		t.Errorf("%s: id says %q; want uid=2000(work) gid=3000 and group 4000", where, out)
	}
}

// TestKernelUser creates a kernel with the uid, main_gid and
// supplementary_gids of a creation request, a bootstrap script, dotfiles,
// docker credentials and a sudo session (upstream: runner/entrypoint.sh
// for the user, kernel/base.py 1171-1174 for the bootstrap,
// agent/docker/agent.py 972-1003 and 1337-1353 for the files and sudoers),
// and checks the user's identity in execute, a batch run, an app's
// process and an ssh session.
func TestKernelUser(t *testing.T) {
	e := newEnv(t)
	image := buildAppsImage(t, e.docker)
	m := e.manager(t)
	start(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	uid, gid := 2000, 3000
	userKey, userSigner := sshKeypair(t)
	req := request(e.kid("k-user"))
	req.Image = image
	req.UID, req.MainGID, req.SupplementaryGIDs = &uid, &gid, []int{4000}
	req.UserSSHKey = userKey
	req.BootstrapScript = "id > /home/work/boot.out\nexit 3\n" // a failing script does not fail creation
	req.Dotfiles = []kernel.Dotfile{{Path: ".bashrc", Perm: "644", Data: "export FROM_DOTFILE=1"}, {Path: "/home/work/.config/x/y.conf", Perm: "755", Data: "a=1\n"}}
	req.DockerCredentials = []byte(`{"cr.example.com":{"username":"u","password":"p"}}`)
	req.SudoSession = true
	created := create(t, m, req)
	t.Cleanup(func() {
		if _, err := m.Destroy(context.Background(), e.kid("k-user"), ""); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	work := filepath.Join(created.ScratchDir, "work")

	t.Run("the bootstrap ran before creation returned, as the kernel user", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(work, "boot.out"))
		if err != nil {
			t.Fatal(err)
		}
		wantIdentity(t, "bootstrap", string(raw))
		for _, name := range []string{"boot.out", "bootstrap.sh"} {
			st, err := os.Stat(filepath.Join(work, name))
			if err != nil {
				t.Fatal(err)
			}
			if s := st.Sys().(*syscall.Stat_t); s.Uid != 2000 || s.Gid != 3000 {
				t.Errorf("%s owned by %d:%d, want 2000:3000", name, s.Uid, s.Gid)
			}
		}
	})
	t.Run("files the agent writes are the user's", func(t *testing.T) {
		for _, c := range []struct {
			path string
			mode os.FileMode
			data string
		}{{".bashrc", 0o644, "export FROM_DOTFILE=1\n"}, {".config/x/y.conf", 0o755, "a=1\n"}, {".config/x", 0o755, ""}, {".ssh/authorized_keys", 0o600, ""}} {
			p := filepath.Join(work, c.path)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if s := st.Sys().(*syscall.Stat_t); s.Uid != 2000 || s.Gid != 3000 || st.Mode().Perm() != c.mode {
				t.Errorf("%s: %d:%d %v, want 2000:3000 %v", c.path, s.Uid, s.Gid, st.Mode().Perm(), c.mode)
			}
			if c.data != "" {
				if raw, _ := os.ReadFile(p); string(raw) != c.data {
					t.Errorf("%s holds %q, want %q", c.path, raw, c.data)
				}
			}
		}
		if raw, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", kernel.DockerCredsFile)); err != nil || !strings.Contains(string(raw), `"username":"u"`) {
			t.Errorf("docker-creds.json: %q, %v", raw, err)
		}
	})
	t.Run("execute", func(t *testing.T) {
		out := stdout(run(t, m, e.kid("k-user"), "r1", runnerclient.ModeQuery, "import subprocess\nprint(subprocess.run(['id'], capture_output=True, text=True).stdout, end='')"))
		wantIdentity(t, "execute", out)
	})
	t.Run("the environment", func(t *testing.T) {
		out := stdout(run(t, m, e.kid("k-user"), "r2", runnerclient.ModeQuery,
			"import os\nfor k in ['LOCAL_USER_ID','LOCAL_GROUP_ID','ADDITIONAL_GIDS','LANG','TERM','HOME']: print(k, os.environ.get(k))\nprint(os.environ['PATH'].split(':')[0])\nprint(os.getcwd())"))
		want := "LOCAL_USER_ID 2000\nLOCAL_GROUP_ID 3000\nADDITIONAL_GIDS 4000\nLANG C.UTF-8\nTERM xterm\nHOME /home/work\n/home/work/.local/bin\n/home/work\n"
		if out != want {
			t.Errorf("got %q\nwant %q", out, want)
		}
	})
	t.Run("a batch run", func(t *testing.T) {
		var out strings.Builder
		mode := runnerclient.ModeBatch
		for {
			res, err := m.Execute(ctx, e.kid("k-user"), "r3", mode, "", runnerclient.ExecOptions{
				FlushTimeout: time.Second, Batch: runnerclient.Batch{Exec: "id"}})
			if err != nil {
				t.Fatal(err)
			}
			out.WriteString(stdout(res))
			if res.Status == runnerclient.StatusFinished {
				break
			}
			mode = runnerclient.ModeContinue
		}
		wantIdentity(t, "batch", out.String())
	})
	t.Run("an app's process", func(t *testing.T) {
		if res, err := m.StartService(ctx, e.kid("k-user"), protocol.ServiceRequest{Name: "jupyter"}); err != nil || res.Status != "started" {
			t.Fatalf("start jupyter: %+v, %v", res, err)
		}
		out := stdout(run(t, m, e.kid("k-user"), "r4", runnerclient.ModeQuery, `import os
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            cmd = open('/proc/%s/cmdline' % pid, 'rb').read()
            if b'/opt/app.py' in cmd:
                for line in open('/proc/%s/status' % pid):
                    if line.split(':')[0] in ('Uid', 'Gid', 'Groups'):
                        print(line.split(':')[0], line.split()[1:])
        except OSError:
            pass`))
		if !strings.Contains(out, "Uid ['2000'") || !strings.Contains(out, "Gid ['3000'") || !strings.Contains(out, "'4000'") {
			t.Errorf("the app's process: %q", out)
		}
	})
	t.Run("an ssh session", func(t *testing.T) {
		var port int
		for _, sp := range created.ServicePorts {
			if sp.Name == protocol.SSHDService {
				port = sp.HostPorts[0]
			}
		}
		c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &ssh.ClientConfig{
			User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(userSigner)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out, code := sshRun(t, c, "id")
		if code != 0 {
			t.Fatalf("id exit %d: %q", code, out)
		}
		wantIdentity(t, "ssh", out)
		// A file uploaded over SFTP belongs to the kernel user, as under
		// upstream's dropbear and sftp-server.
		sc, err := sftp.NewClient(c)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		f, err := sc.Create("uploaded.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		owner := stdout(run(t, m, e.kid("k-user"), "r-sftp", runnerclient.ModeQuery,
			"import os; st = os.stat('/home/work/uploaded.txt'); print('%d:%d' % (st.st_uid, st.st_gid), end='')"))
		if owner != "2000:3000" {
			t.Errorf("the file uploaded over SFTP is owned by %q, want 2000:3000", owner)
		}
	})
	t.Run("sudoers written as root", func(t *testing.T) {
		out := stdout(run(t, m, e.kid("k-user"), "r5", runnerclient.ModeQuery, "print(open('/etc/sudoers.d/01-bai-work').read(), end='')"))
		if out != "work ALL=(ALL:ALL) NOPASSWD:ALL\n" {
			t.Errorf("sudoers: %q", out)
		}
	})
}

// TestBlockServicePorts: block_service_ports still publishes the ports
// (upstream's agent/docker/agent.py labels the container and keeps the
// bindings; its kernel.py refuses start_service). A restart takes the
// flag of the merged request, for the kernel as for the new container's
// label: upstream's restart_kernel (agent/agent.py) re-creates the kernel
// object, whose data["block_service_ports"] start_container
// (agent/docker/agent.py) reads off the merged internal_data.
func TestBlockServicePorts(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	req := request(e.kid("k-block"))
	req.BlockServicePorts = true
	created := create(t, m, req)
	t.Cleanup(func() {
		if _, err := m.Destroy(context.Background(), e.kid("k-block"), ""); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	names := map[string]bool{}
	for _, sp := range created.ServicePorts {
		names[sp.Name] = len(sp.HostPorts) > 0
	}
	if !names["web"] || !names[protocol.SSHDService] {
		t.Fatalf("service ports %+v, want web and sshd published", created.ServicePorts)
	}
	info, err := m.Get(e.kid("k-block"))
	if err != nil || !info.BlockServicePorts {
		t.Fatalf("info %+v, %v; want BlockServicePorts", info, err)
	}

	for _, step := range []struct {
		description string
		update      func(*kernel.CreateRequest)
		want        bool
	}{
		{"a restart without internal_data keeps it", nil, true},
		{"internal_data without block_service_ports clears it", func(req *kernel.CreateRequest) { req.BlockServicePorts = false }, false},
		{"the next restart keeps the cleared flag", nil, false},
		{"internal_data with block_service_ports sets it", func(req *kernel.CreateRequest) { req.BlockServicePorts = true }, true},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		restarted, err := m.Restart(ctx, kernel.RestartRequest{KernelID: e.kid("k-block"), Update: step.update})
		cancel()
		if err != nil {
			t.Fatalf("%s: restart: %v", step.description, err)
		}
		label := "0"
		if step.want {
			label = "1"
		}
		insp, err := e.docker.ContainerInspect(context.Background(), restarted.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := insp.Container.Config.Labels[kernel.LabelBlockServicePorts]; got != label {
			t.Errorf("%s: label %s=%q, want %q", step.description, kernel.LabelBlockServicePorts, got, label)
		}
		if info, err := m.Get(e.kid("k-block")); err != nil || info.BlockServicePorts != step.want {
			t.Errorf("%s: info.BlockServicePorts %v (%v), want %v", step.description, info.BlockServicePorts, err, step.want)
		}
	}
}
