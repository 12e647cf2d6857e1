package scratch

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestWriteSSH(t *testing.T) {
	cluster := &SSHKeypair{PublicKey: "ssh-ed25519 CLUSTER", PrivateKey: "CLUSTER PRIVATE"}
	user := &SSHKeypair{PublicKey: "ssh-rsa USER", PrivateKey: "USER PRIVATE"}
	type file struct {
		path string // under the scratch dir
		data string // "" checks only the mode
		mode os.FileMode
	}
	cases := []struct {
		description string
		files       SSHFiles
		before      map[string]string // files already in the scratch dir
		want        []file
		absent      []string
	}{
		{description: "no keys: only the host key",
			files:  SSHFiles{UID: -1, GID: -1},
			want:   []file{{path: "config/ssh/ssh_host_ed25519_key", mode: 0o600}, {path: "config/ssh", mode: os.ModeDir | 0o755}},
			absent: []string{"config/ssh/id_cluster", "work/.ssh", "work/id_container"}},
		{description: "cluster keypair and port mapping in config/ssh, private key 0600",
			files: SSHFiles{Cluster: cluster, PortMapping: map[string]any{"main1": []any{"10.0.0.1", 30022}}, UID: -1, GID: -1},
			want: []file{
				{path: "config/ssh/id_cluster", data: "CLUSTER PRIVATE", mode: 0o600},
				{path: "config/ssh/id_cluster.pub", data: "ssh-ed25519 CLUSTER", mode: 0o644},
				{path: "config/ssh/port-mapping.json", data: `{"main1":["10.0.0.1",30022]}`, mode: 0o644},
			},
			absent: []string{"work/.ssh"}},
		{description: "cluster keypair without a port mapping writes no mapping",
			files:  SSHFiles{Cluster: cluster, UID: -1, GID: -1},
			want:   []file{{path: "config/ssh/id_cluster", data: "CLUSTER PRIVATE", mode: 0o600}},
			absent: []string{"config/ssh/port-mapping.json"}},
		{description: "user keypair: authorized_keys, id_rsa and id_container, all 0600 in a 0700 .ssh",
			files: SSHFiles{User: user, UID: -1, GID: -1},
			want: []file{
				{path: "work/.ssh", mode: os.ModeDir | 0o700},
				{path: "work/.ssh/authorized_keys", data: "ssh-rsa USER", mode: 0o600},
				{path: "work/.ssh/id_rsa", data: "USER PRIVATE", mode: 0o600},
				{path: "work/id_container", data: "USER PRIVATE", mode: 0o600},
			},
			absent: []string{"config/ssh/id_cluster"}},
		{description: "the user's own id_rsa is kept, authorized_keys replaced",
			files:  SSHFiles{User: user, UID: -1, GID: -1},
			before: map[string]string{"work/.ssh/id_rsa": "MINE", "work/.ssh/authorized_keys": "OLD"},
			want: []file{
				{path: "work/.ssh/id_rsa", data: "MINE", mode: 0o600},
				{path: "work/.ssh/authorized_keys", data: "ssh-rsa USER", mode: 0o600},
			}},
		{description: "a mounted .ssh folder gets no user keys",
			files:  SSHFiles{User: user, UserSSHMounted: true, UID: -1, GID: -1},
			absent: []string{"work/.ssh", "work/id_container"}},
		{description: "an empty public key is no keypair",
			files:  SSHFiles{User: &SSHKeypair{}, Cluster: &SSHKeypair{}, UID: -1, GID: -1},
			absent: []string{"work/.ssh", "config/ssh/id_cluster"}},
		{description: "an existing host key is kept (a restarted kernel keeps its identity)",
			files:  SSHFiles{UID: -1, GID: -1},
			before: map[string]string{"config/ssh/ssh_host_ed25519_key": "KEPT"},
			want:   []file{{path: "config/ssh/ssh_host_ed25519_key", data: "KEPT"}}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			d, err := Create(t.TempDir(), "k1", -1, -1)
			if err != nil {
				t.Fatal(err)
			}
			for path, data := range tc.before {
				full := filepath.Join(d.Base, path)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteSSH(d, tc.files); err != nil {
				t.Fatalf("WriteSSH: %v", err)
			}
			for _, f := range tc.want {
				full := filepath.Join(d.Base, f.path)
				st, err := os.Stat(full)
				if err != nil {
					t.Fatalf("%s: %v", f.path, err)
				}
				if f.mode != 0 && st.Mode() != f.mode {
					t.Errorf("%s: mode %v, want %v", f.path, st.Mode(), f.mode)
				}
				if f.data != "" {
					if got, _ := os.ReadFile(full); string(got) != f.data {
						t.Errorf("%s: %q, want %q", f.path, got, f.data)
					}
				}
			}
			for _, path := range tc.absent {
				if _, err := os.Stat(filepath.Join(d.Base, path)); !os.IsNotExist(err) {
					t.Errorf("%s: want absent, stat says %v", path, err)
				}
			}
		})
	}
}

func TestWriteSSHHostKeyAndOwner(t *testing.T) {
	d, err := Create(t.TempDir(), "k1", -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 1234, 2345 // as root, give the files to the kernel's user
	}
	files := SSHFiles{Cluster: &SSHKeypair{PublicKey: "p", PrivateKey: "k"}, User: &SSHKeypair{PublicKey: "p", PrivateKey: "k"}, UID: uid, GID: gid}
	if err := WriteSSH(d, files); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(d.Config, SSHDir, SSHHostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(raw)
	if err != nil || signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("host key does not parse as ed25519: %v", err)
	}
	for _, path := range []string{"config/ssh", "config/ssh/ssh_host_ed25519_key", "config/ssh/id_cluster", "config/ssh/id_cluster.pub",
		"work/.ssh", "work/.ssh/authorized_keys", "work/.ssh/id_rsa", "work/id_container"} {
		st, err := os.Stat(filepath.Join(d.Base, path))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != uid || int(sys.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", path, sys.Uid, sys.Gid, uid, gid)
		}
	}
}
