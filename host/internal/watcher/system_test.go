package watcher

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// script writes an executable shell script standing in for a system
// command; no real systemctl, mount or shutdown ever runs.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOSSystemCommands(t *testing.T) {
	dir := t.TempDir()
	echo := script(t, dir, "echo-args", `printf '%s|' "$@"`)
	fail := script(t, dir, "fail", `echo partial; echo "it broke" >&2; exit 3`)
	cases := []struct {
		description string
		sys         OSSystem
		run         func(OSSystem) (string, error)
		wantOut     string
		wantErr     string
		notFound    bool
	}{
		{
			description: "systemctl gets its arguments without a shell",
			sys:         OSSystem{SystemctlPath: echo},
			run: func(s OSSystem) (string, error) {
				return s.Systemctl(context.Background(), "is-active", "a b;$(x).service")
			},
			wantOut: "is-active|a b;$(x).service|",
		},
		{
			description: "mount ends its options before the source",
			sys:         OSSystem{MountPath: echo},
			run: func(s OSSystem) (string, error) {
				return s.Mount(context.Background(), "nfs", "ro", "nas:/x", "/mnt/x")
			},
			wantOut: "-t|nfs|-o|ro|--|nas:/x|/mnt/x|",
		},
		{
			description: "mount without options",
			sys:         OSSystem{MountPath: echo},
			run: func(s OSSystem) (string, error) {
				return s.Mount(context.Background(), "nfs", "", "nas:/x", "/mnt/x")
			},
			wantOut: "-t|nfs|--|nas:/x|/mnt/x|",
		},
		{
			description: "umount",
			sys:         OSSystem{UmountPath: echo},
			run:         func(s OSSystem) (string, error) { return s.Unmount(context.Background(), "/mnt/x") },
			wantOut:     "--|/mnt/x|",
		},
		{
			description: "shutdown -h now",
			sys:         OSSystem{ShutdownPath: echo},
			run:         func(s OSSystem) (string, error) { return "", s.Shutdown(context.Background()) },
		},
		{
			description: "a non-zero exit keeps stdout and reports stderr",
			sys:         OSSystem{SystemctlPath: fail},
			run:         func(s OSSystem) (string, error) { return s.Systemctl(context.Background(), "stop", "x") },
			wantOut:     "partial\n",
			wantErr:     fail + " stop x: exit status 3: it broke",
		},
		{
			description: "a missing binary is exec.ErrNotFound",
			sys:         OSSystem{SystemctlPath: "no-such-systemctl-binary"},
			run:         func(s OSSystem) (string, error) { return s.Systemctl(context.Background(), "stop", "x") },
			wantErr:     "no-such-systemctl-binary stop x",
			notFound:    true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			out, err := tc.run(tc.sys)
			if out != tc.wantOut {
				t.Errorf("stdout %q, want %q", out, tc.wantOut)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if got := errors.Is(err, exec.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(err, exec.ErrNotFound) = %v, want %v", got, tc.notFound)
			}
		})
	}
}

func TestOSSystemFiles(t *testing.T) {
	dir := t.TempDir()
	sys := OSSystem{ProcMountsPath: filepath.Join(dir, "mounts")}
	real := filepath.Join(dir, "fstab.real")
	link := filepath.Join(dir, "fstab")
	if err := os.WriteFile(real, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := sys.WriteFile(link, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(real); string(data) != "new\n" {
		t.Errorf("target holds %q", data)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := sys.WriteFile(filepath.Join(dir, "absent"), []byte("x")); err == nil {
		t.Error("WriteFile created a missing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	mp := filepath.Join(dir, "mp")
	if created, err := sys.Mkdir(mp); !created || err != nil {
		t.Errorf("Mkdir: %v %v", created, err)
	}
	if created, err := sys.Mkdir(mp); created || err != nil {
		t.Errorf("Mkdir of an existing directory: %v %v", created, err)
	}
	if _, err := sys.Mkdir(real); err == nil {
		t.Error("Mkdir over a file succeeded")
	}
	if err := sys.Rmdir(real); err == nil {
		t.Error("Rmdir removed a file")
	}
	if err := os.WriteFile(filepath.Join(mp, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sys.Rmdir(mp); err == nil {
		t.Error("Rmdir removed a non-empty directory")
	}
	if err := os.WriteFile(sys.ProcMountsPath, []byte("a /b c d 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := sys.ProcMounts(); err != nil || string(data) != "a /b c d 0 0\n" {
		t.Errorf("ProcMounts: %q %v", data, err)
	}
}

func TestFstabEntries(t *testing.T) {
	cases := []struct {
		description string
		text        string
		add         *FstabEntry
		remove      string
		want        string
		wantChanged bool
	}{
		{"add to an empty file", "", &FstabEntry{Device: "nas:/x", Mountpoint: "/m/x", FSType: "nfs"}, "", "nas:/x /m/x nfs defaults 0 0\n", true},
		{"add escapes spaces", "a / ext4 defaults 0 1\n", &FstabEntry{Device: "nas:/x", Mountpoint: "/m/a b", FSType: "nfs", Options: "ro"}, "", "a / ext4 defaults 0 1\nnas:/x /m/a\\040b nfs ro 0 0\n", true},
		{"add skips a device already listed", "nas:/x\t/elsewhere nfs ro 0 0\n", &FstabEntry{Device: "nas:/x", Mountpoint: "/m/x", FSType: "nfs"}, "", "nas:/x\t/elsewhere nfs ro 0 0\n", false},
		{"add ignores commented devices", "#nas:/x /m/x nfs ro 0 0\n", &FstabEntry{Device: "nas:/x", Mountpoint: "/m/x", FSType: "nfs"}, "", "#nas:/x /m/x nfs ro 0 0\nnas:/x /m/x nfs defaults 0 0\n", true},
		{"remove the first match only", "a /m/x nfs ro 0 0\n# c\nb /m/x nfs ro 0 0\n", nil, "/m/x", "# c\nb /m/x nfs ro 0 0\n", true},
		{"remove matches an escaped mount point", "a /m/a\\040b nfs ro 0 0\n", nil, "/m/a b", "", true},
		{"remove skips comments", "# a /m/x nfs ro 0 0\n", nil, "/m/x", "# a /m/x nfs ro 0 0\n", false},
		{"remove of a last line without newline", "x / ext4 d 0 1\na /m/x nfs ro 0 0", nil, "/m/x", "x / ext4 d 0 1\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			var got string
			var changed bool
			if tc.add != nil {
				got, changed = FstabAdd(tc.text, *tc.add)
			} else {
				got, changed = FstabRemoveByMountpoint(tc.text, tc.remove)
			}
			if got != tc.want || changed != tc.wantChanged {
				t.Errorf("got %q (changed %v), want %q (changed %v)", got, changed, tc.want, tc.wantChanged)
			}
		})
	}
}

// selfSigned writes a certificate and key for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "watcher"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestLoadTLS(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	cases := []struct {
		description string
		files       TLSFiles
		wantErr     string
	}{
		{"both files", TLSFiles{Cert: certFile, Key: keyFile}, ""},
		{"no cert", TLSFiles{Key: keyFile}, "watcher.ssl-cert is not set"},
		{"no key", TLSFiles{Cert: certFile}, "watcher.ssl-key (or ssl-privkey) is not set"},
		{"key and cert swapped", TLSFiles{Cert: keyFile, Key: certFile}, "watcher TLS (ssl-cert"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			cfg, err := LoadTLS(tc.files)
			if tc.wantErr == "" {
				if err != nil || cfg == nil || len(cfg.Certificates) != 1 {
					t.Fatalf("LoadTLS: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestServeOverTLSUntilCancelled(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	tlsConfig, err := LoadTLS(TLSFiles{Cert: certFile, Key: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	sys := newFakeSystem()
	sys.stdout["systemctl is-active"] = "active\n"
	srv := New(Options{Store: &fakeStore{kv: map[string]string{}}, System: sys, Log: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, tlsConfig) }()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
	req.Header.Set(TokenHeader, DefaultToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"agent-status":"active"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if calls, _, _ := sys.snapshot(); len(calls) != 1 || calls[0] != "systemctl is-active backendai-agent.service" {
		t.Errorf("default target service not used: %v", calls)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
