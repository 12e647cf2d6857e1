package runner

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

func newTestKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// sshdFixture is an sshServer on a loopback port with a user key in
// work/.ssh/authorized_keys and a cluster key in config/ssh/id_cluster.pub.
type sshdFixture struct {
	srv                *sshServer
	addr               string
	workDir, configDir string
	user, cluster      ssh.Signer
}

func startTestSSHD(t *testing.T, writeUserKey bool, configure ...func(*SSHDConfig)) *sshdFixture {
	t.Helper()
	f := &sshdFixture{workDir: t.TempDir(), configDir: t.TempDir(), user: newTestKey(t), cluster: newTestKey(t)}
	if writeUserKey {
		if err := os.MkdirAll(filepath.Join(f.workDir, ".ssh"), 0o700); err != nil {
			t.Fatal(err)
		}
		// A comment and a garbage line are skipped, not fatal.
		authorized := "# keys\nnot a key\n" + string(ssh.MarshalAuthorizedKey(f.user.PublicKey()))
		if err := os.WriteFile(filepath.Join(f.workDir, ".ssh", "authorized_keys"), []byte(authorized), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.configDir, "id_cluster.pub"), ssh.MarshalAuthorizedKey(f.cluster.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := SSHDConfig{
		HostKeyPath:    filepath.Join(f.configDir, "ssh_host_ed25519_key"),
		AuthorizedKeys: []string{filepath.Join(f.workDir, ".ssh", "authorized_keys"), filepath.Join(f.configDir, "id_cluster.pub")},
		UserKeyDir:     f.workDir,
	}
	for _, c := range configure {
		c(&cfg)
	}
	sh := testutil.RequireTool(t, "sh", "a POSIX shell")
	srv, err := newSSHServer(cfg, sh, f.workDir, append(os.Environ(), "GREETING=from-kernel"), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen([]int{0}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	f.srv = srv
	srv.mu.Lock()
	f.addr = srv.listeners[0].Addr().String()
	srv.mu.Unlock()
	return f
}

func (f *sshdFixture) dial(t *testing.T, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", f.addr, &ssh.ClientConfig{
		User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// run runs command over a new session: its stdout, stderr and exit status.
func run(t *testing.T, c *ssh.Client, command string) (string, string, int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitStatus()
	}
	t.Fatalf("run %q: %v", command, err)
	return "", "", 0
}

func TestSSHDExecAndAuth(t *testing.T) {
	f := startTestSSHD(t, true)
	user, err := f.dial(t, f.user)
	if err != nil {
		t.Fatalf("user key refused: %v", err)
	}
	cases := []struct {
		description string
		command     string
		wantOut     string
		wantErr     string
		wantCode    int
	}{
		{description: "output and exit status 0", command: "echo hi; echo oops >&2", wantOut: "hi\n", wantErr: "oops\n"},
		{description: "a non-zero exit status comes back", command: "exit 7", wantCode: 7},
		{description: "the kernel's environment", command: "echo $GREETING", wantOut: "from-kernel\n"},
		{description: "runs in the work dir", command: "pwd", wantOut: f.workDir + "\n"},
		{description: "a signal is 128+N", command: "kill -TERM $$", wantCode: 128 + 15},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			out, errOut, code := run(t, user, tc.command)
			if out != tc.wantOut || errOut != tc.wantErr || code != tc.wantCode {
				t.Fatalf("got %q, %q, exit %d; want %q, %q, exit %d", out, errOut, code, tc.wantOut, tc.wantErr, tc.wantCode)
			}
		})
	}

	t.Run("the cluster key logs in", func(t *testing.T) {
		c, err := f.dial(t, f.cluster)
		if err != nil {
			t.Fatalf("cluster key refused: %v", err)
		}
		if out, _, _ := run(t, c, "echo ok"); out != "ok\n" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("an unknown key is refused", func(t *testing.T) {
		if _, err := f.dial(t, newTestKey(t)); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("unknown key: %v, want an authentication failure", err)
		}
	})
	t.Run("a key added later to authorized_keys logs in", func(t *testing.T) {
		later := newTestKey(t)
		path := filepath.Join(f.workDir, ".ssh", "authorized_keys")
		file, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = file.Write(ssh.MarshalAuthorizedKey(later.PublicKey()))
		_ = file.Close()
		if _, err := f.dial(t, later); err != nil {
			t.Fatalf("added key refused: %v", err)
		}
	})
}

func TestSSHDSFTPAndPTY(t *testing.T) {
	f := startTestSSHD(t, true)
	c, err := f.dial(t, f.user)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
	defer sc.Close()
	if wd, err := sc.Getwd(); err != nil || wd != f.workDir {
		t.Fatalf("sftp starts in %q (%v), want %q", wd, err, f.workDir)
	}
	w, err := sc.Create("upload.txt") // relative: lands in the work dir
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("uploaded\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run(t, c, "cat upload.txt"); out != "uploaded\n" || code != 0 {
		t.Fatalf("uploaded file reads %q (exit %d)", out, code)
	}

	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatalf("pty-req: %v", err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	if err := sess.WindowChange(40, 100); err != nil {
		t.Fatalf("window-change: %v", err)
	}
	// stty reads the size through the pty; the echo shows a tty is there.
	_, _ = io.WriteString(stdin, "echo term=$TERM; stty size; tty >/dev/null && echo has-tty; exit 3\n")
	out, _ := io.ReadAll(stdout)
	err = sess.Wait()
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("shell exit: %v, want status 3; output %q", err, out)
	}
	for _, want := range []string{"term=xterm", "has-tty"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("pty output %q lacks %q", out, want)
		}
	}
	if _, err := exec.LookPath("stty"); err == nil && !bytes.Contains(out, []byte("40 100")) {
		t.Errorf("pty output %q lacks the changed size 40 100", out)
	}
}

func TestSSHDMakesUserKeyWhenNoneGiven(t *testing.T) {
	f := startTestSSHD(t, false)
	raw, err := os.ReadFile(filepath.Join(f.workDir, "id_container"))
	if err != nil {
		t.Fatalf("no id_container made: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(f.workDir, "id_container")); st.Mode().Perm() != 0o600 {
		t.Errorf("id_container mode %v, want 0600", st.Mode().Perm())
	}
	if block, _ := pem.Decode(raw); block == nil {
		t.Fatalf("id_container is not PEM: %q", raw)
	}
	key, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dial(t, key); err != nil {
		t.Fatalf("the made key is refused: %v", err)
	}
}

func TestWriteClusterSSHConfig(t *testing.T) {
	const entryFmt = "\nHost %s\n%s\tPort %s\n\tStrictHostKeyChecking no\n\tIdentityFile %s\n"
	cases := []struct {
		description string
		clusterKey  bool
		mapping     string // port-mapping.json; "" for none
		env         []string
		existing    string // .ssh/config before
		want        func(keyPath string) string
		wantErr     bool
	}{
		{description: "no cluster key: nothing written", env: []string{"BACKENDAI_CLUSTER_REPLICAS=main:1,sub:2"},
			want: func(string) string { return "" }},
		{description: "one entry per role on port 2200", clusterKey: true, env: []string{"BACKENDAI_CLUSTER_REPLICAS=main:1,sub:2"},
			want: func(k string) string {
				return fmt.Sprintf(entryFmt, "main*", "", "2200", k) + fmt.Sprintf(entryFmt, "sub*", "", "2200", k)
			}},
		{description: "no replicas in the environment: main", clusterKey: true,
			want: func(k string) string { return fmt.Sprintf(entryFmt, "main*", "", "2200", k) }},
		{description: "the port mapping gives hostnames and ports", clusterKey: true,
			mapping: `{"sub1":["10.0.0.2",30022],"main1":["10.0.0.1",30021]}`,
			want: func(k string) string {
				return fmt.Sprintf(entryFmt, "main1", "\tHostName 10.0.0.1\n", "30021", k) + fmt.Sprintf(entryFmt, "sub1", "\tHostName 10.0.0.2\n", "30022", k)
			}},
		{description: "hosts already there are not added again (a restart)", clusterKey: true,
			env: []string{"BACKENDAI_CLUSTER_REPLICAS=main:1,sub:1"}, existing: "\nHost main*\n\tPort 2200\n",
			want: func(k string) string {
				return "\nHost main*\n\tPort 2200\n" + fmt.Sprintf(entryFmt, "sub*", "", "2200", k)
			}},
		{description: "a malformed port mapping is an error", clusterKey: true, mapping: `{"main1":"10.0.0.1"}`, wantErr: true,
			want: func(string) string { return "" }},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			work, config := t.TempDir(), t.TempDir()
			cfg := SSHDConfig{UserKeyDir: work, ClusterKeyPath: filepath.Join(config, "id_cluster"), PortMappingPath: filepath.Join(config, "port-mapping.json")}
			if tc.clusterKey {
				if err := os.WriteFile(cfg.ClusterKeyPath, []byte("key"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.mapping != "" {
				if err := os.WriteFile(cfg.PortMappingPath, []byte(tc.mapping), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			sshConfig := filepath.Join(work, ".ssh", "config")
			if tc.existing != "" {
				_ = os.MkdirAll(filepath.Dir(sshConfig), 0o700)
				if err := os.WriteFile(sshConfig, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := writeClusterSSHConfig(cfg, tc.env, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			got, _ := os.ReadFile(sshConfig)
			if want := tc.want(cfg.ClusterKeyPath); string(got) != want {
				t.Fatalf(".ssh/config\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestSSHDCloseDropsHandshakes: a client that connects and says nothing
// does not hold up the runner's shutdown.
func TestSSHDCloseDropsHandshakes(t *testing.T) {
	f := startTestSSHD(t, true)
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The server's version line shows the connection is being served.
	if _, err := bufio.NewReader(silent).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	f.srv.Close()
	if _, err := io.ReadAll(silent); err != nil {
		t.Fatalf("the silent connection was not closed cleanly: %v", err)
	}
}

func TestSSHDKeepalive(t *testing.T) {
	const interval = 30 * time.Millisecond
	f := startTestSSHD(t, true, func(c *SSHDConfig) { c.KeepaliveInterval = interval })
	// connect logs in with a bare client connection and hands every global
	// request from the server to handle.
	connect := func(t *testing.T, handle func(*ssh.Request)) ssh.Conn {
		nc, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, chans, reqs, err := ssh.NewClientConn(nc, f.addr, &ssh.ClientConfig{
			User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.user)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		go func() {
			for nch := range chans {
				_ = nch.Reject(ssh.Prohibited, "no")
			}
		}()
		go func() {
			for r := range reqs {
				handle(r)
			}
		}()
		return conn
	}

	t.Run("a client that answers is asked regularly and stays connected", func(t *testing.T) {
		var keepalives atomic.Int32
		conn := connect(t, func(r *ssh.Request) {
			if r.Type == "keepalive@openssh.com" {
				keepalives.Add(1)
			}
			_ = r.Reply(false, nil) // as OpenSSH answers an unknown request
		})
		time.Sleep(20 * interval)
		if n := keepalives.Load(); n < 3 {
			t.Fatalf("%d keepalives in %v at a %v interval", n, 20*interval, interval)
		}
		if _, _, err := conn.SendRequest("still-there@test", true, nil); err != nil {
			t.Fatalf("connection closed although the client answered: %v", err)
		}
	})
	t.Run("a client that never answers is cut off", func(t *testing.T) {
		conn := connect(t, func(*ssh.Request) {})
		closed := make(chan error, 1)
		go func() { closed <- conn.Wait() }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection still open after %d unanswered keepalives should have closed it", keepaliveMissLimit)
		}
	})
}
