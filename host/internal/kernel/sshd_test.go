package kernel_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// sshKeypair makes a keypair as the manager sends it, and its signer.
func sshKeypair(t *testing.T) (*scratch.SSHKeypair, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &scratch.SSHKeypair{
		PublicKey:  string(ssh.MarshalAuthorizedKey(signer.PublicKey())),
		PrivateKey: string(pem.EncodeToMemory(block)),
	}, signer
}

func sshRun(t *testing.T, c *ssh.Client, command string) (string, int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitStatus()
	}
	t.Fatalf("ssh %q: %v", command, err)
	return "", 0
}

// TestKernelSSHD reaches a kernel's intrinsic sshd through its published
// host port with the user's and the cluster's keys from the creation
// request: exec, exit status, a refused key, SFTP into /home/work, a pty.
func TestKernelSSHD(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	userKey, userSigner := sshKeypair(t)
	clusterKey, clusterSigner := sshKeypair(t)
	req := request(e.kid("k-sshd"))
	req.UserSSHKey, req.ClusterSSHKey = userKey, clusterKey
	created := create(t, m, req)
	// Destroyed while the manager runs, so that it cleans the scratch dir
	// (t.Cleanup runs this before stopping the manager).
	t.Cleanup(func() {
		if _, err := m.Destroy(context.Background(), e.kid("k-sshd"), ""); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})

	if len(created.ServicePorts) == 0 || created.ServicePorts[0].Name != protocol.SSHDService ||
		created.ServicePorts[0].ContainerPorts[0] != protocol.SSHDPort {
		t.Fatalf("service ports %+v, want sshd on %d first", created.ServicePorts, protocol.SSHDPort)
	}
	addr := "127.0.0.1:" + strconv.Itoa(created.ServicePorts[0].HostPorts[0])

	kconfig, err := os.ReadFile(filepath.Join(created.ScratchDir, "config", "kconfig.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(kconfig, []byte("PRIVATE KEY")) {
		t.Error("kconfig.json holds a private key")
	}

	// sshd runs from boot; start_service finds it running, and after a
	// shutdown starts it again.
	if res, err := m.StartService(ctx, e.kid("k-sshd"), protocol.ServiceRequest{Name: "sshd"}); err != nil || res.Status != "running" {
		t.Fatalf("start_service sshd at boot: %+v, %v; want running", res, err)
	}
	if err := m.ShutdownService(ctx, e.kid("k-sshd"), "sshd"); err != nil {
		t.Fatal(err)
	}
	if res, err := m.StartService(ctx, e.kid("k-sshd"), protocol.ServiceRequest{Name: "sshd"}); err != nil || res.Status != "started" {
		t.Fatalf("start_service sshd: %+v, %v; want started", res, err)
	}

	dial := func(key ssh.Signer) (*ssh.Client, error) {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
			User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
			Timeout: 30 * time.Second,
		})
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return c, err
	}
	c, err := dial(userSigner)
	if err != nil {
		t.Fatalf("ssh with the user's key: %v", err)
	}

	cases := []struct {
		description string
		command     string
		wantOut     string
		wantCode    int
	}{
		{description: "exec as the kernel user", command: "echo hi; id -u", wantOut: "hi\n1000\n"},
		{description: "a non-zero exit status comes back", command: "echo bye; exit 3", wantOut: "bye\n", wantCode: 3},
		{description: "the kernel's environment and work dir", command: "echo $GREETING; pwd", wantOut: "from-manager\n/home/work\n"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			if out, code := sshRun(t, c, tc.command); out != tc.wantOut || code != tc.wantCode {
				t.Fatalf("got %q exit %d; want %q exit %d", out, code, tc.wantOut, tc.wantCode)
			}
		})
	}

	t.Run("the cluster key logs in", func(t *testing.T) {
		cc, err := dial(clusterSigner)
		if err != nil {
			t.Fatalf("ssh with the cluster key: %v", err)
		}
		if out, code := sshRun(t, cc, "hostname >/dev/null && echo ok"); out != "ok\n" || code != 0 {
			t.Fatalf("got %q exit %d", out, code)
		}
	})
	t.Run("an unknown key is refused", func(t *testing.T) {
		_, other := sshKeypair(t)
		if _, err := dial(other); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("unknown key: %v, want an authentication failure", err)
		}
	})
	t.Run("an SFTP upload lands in /home/work", func(t *testing.T) {
		sc, err := sftp.NewClient(c)
		if err != nil {
			t.Fatalf("sftp: %v", err)
		}
		defer sc.Close()
		w, err := sc.Create("uploaded.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("over sftp\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if out, code := sshRun(t, c, "cat /home/work/uploaded.txt"); out != "over sftp\n" || code != 0 {
			t.Fatalf("uploaded file reads %q (exit %d)", out, code)
		}
		if onHost, err := os.ReadFile(filepath.Join(created.ScratchDir, "work", "uploaded.txt")); err != nil || string(onHost) != "over sftp\n" {
			t.Fatalf("on the host: %q, %v", onHost, err)
		}
	})
	t.Run("a pty shell", func(t *testing.T) {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		stdin, _ := sess.StdinPipe()
		stdout, _ := sess.StdoutPipe()
		if err := sess.Shell(); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(stdin, "tty >/dev/null && echo \"answer $((6*7))\"; exit\n")
		out, _ := io.ReadAll(stdout)
		if err := sess.Wait(); err != nil {
			t.Fatalf("shell: %v; output %q", err, out)
		}
		if !bytes.Contains(out, []byte("answer 42")) {
			t.Fatalf("pty output %q lacks the command's output", out)
		}
	})
}
