package scratch

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
)

// Paths of the SSH files, as upstream's prepare_ssh and process_mounts
// write them. The config ones are seen in the container under
// /home/config/ssh, the work ones under /home/work.
const (
	SSHDir             = "ssh"                  // config/ssh
	SSHHostKeyFile     = "ssh_host_ed25519_key" // config/ssh: the kernel's sshd host key
	ClusterKeyFile     = "id_cluster"           // config/ssh: cluster_info.ssh_keypair
	ClusterPubKeyFile  = "id_cluster.pub"
	PortMappingFile    = "port-mapping.json" // config/ssh: cluster_ssh_port_mapping
	UserSSHDir         = ".ssh"              // work/.ssh
	AuthorizedKeysFile = "authorized_keys"   // work/.ssh: the user's public key
	UserKeyFile        = "id_rsa"            // work/.ssh: the user's private key, if absent
	ContainerKeyFile   = "id_container"      // work: the user's private key, for download
)

// SSHKeypair is an OpenSSH keypair as the manager sends it (upstream's
// ClusterSSHKeyPair and internal_data.ssh_keypair).
type SSHKeypair struct {
	PublicKey  string
	PrivateKey string
}

// SSHFiles is what WriteSSH writes into a kernel's scratch dir.
type SSHFiles struct {
	// Cluster is cluster_info.ssh_keypair, shared by a session's kernels;
	// PortMapping its cluster_ssh_port_mapping (hostname -> [host, port]).
	Cluster     *SSHKeypair
	PortMapping map[string]any
	// User is internal_data.ssh_keypair, the key the user logs in with.
	User *SSHKeypair
	// UserSSHMounted says a mount covers /home/work/.ssh (the user's own
	// .ssh folder): as upstream, the user's keys are then not written.
	UserSSHMounted bool
	// UID and GID own every file; negative keeps ours.
	UID, GID int
}

// WriteSSH writes the kernel's SSH files: a host key for the kernel's
// sshd (kept when there is one, so a restarted kernel keeps its identity),
// the cluster keypair and port mapping in config/ssh, and the user's
// keypair in work/.ssh and work/id_container. Private keys are 0600.
func WriteSSH(d Dirs, f SSHFiles) error {
	sshDir := filepath.Join(d.Config, SSHDir)
	if err := os.MkdirAll(sshDir, 0o755); err != nil {
		return fmt.Errorf("ssh config dir: %w", err)
	}
	owned := []string{sshDir}
	hostKey := filepath.Join(sshDir, SSHHostKeyFile)
	if _, err := os.Stat(hostKey); errors.Is(err, os.ErrNotExist) {
		pemKey, err := newHostKey()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(hostKey, pemKey, 0o600); err != nil {
			return fmt.Errorf("ssh host key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("ssh host key: %w", err)
	}
	owned = append(owned, hostKey)

	if f.Cluster != nil && f.Cluster.PublicKey != "" {
		files := []struct {
			name string
			data string
			perm os.FileMode
		}{
			{ClusterKeyFile, f.Cluster.PrivateKey, 0o600},
			{ClusterPubKeyFile, f.Cluster.PublicKey, 0o644},
		}
		for _, file := range files {
			path := filepath.Join(sshDir, file.name)
			if err := atomicfile.Write(path, []byte(file.data), file.perm); err != nil {
				return fmt.Errorf("cluster ssh key: %w", err)
			}
			owned = append(owned, path)
		}
		if len(f.PortMapping) > 0 {
			raw, err := json.Marshal(f.PortMapping)
			if err != nil {
				return fmt.Errorf("cluster ssh port mapping: %w", err)
			}
			path := filepath.Join(sshDir, PortMappingFile)
			if err := atomicfile.Write(path, raw, 0o644); err != nil {
				return fmt.Errorf("cluster ssh port mapping: %w", err)
			}
			owned = append(owned, path)
		}
	}

	if f.User != nil && f.User.PublicKey != "" && !f.UserSSHMounted {
		userDir := filepath.Join(d.Work, UserSSHDir)
		if err := os.MkdirAll(userDir, 0o700); err != nil {
			return fmt.Errorf("user ssh dir: %w", err)
		}
		if err := os.Chmod(userDir, 0o700); err != nil {
			return fmt.Errorf("user ssh dir: %w", err)
		}
		authorized := filepath.Join(userDir, AuthorizedKeysFile)
		if err := atomicfile.Write(authorized, []byte(f.User.PublicKey), 0o600); err != nil {
			return fmt.Errorf("user ssh key: %w", err)
		}
		owned = append(owned, userDir, authorized)
		// The user's own id_rsa (from an earlier session's work dir) wins.
		idRSA := filepath.Join(userDir, UserKeyFile)
		if _, err := os.Stat(idRSA); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(idRSA, []byte(f.User.PrivateKey), 0o600); err != nil {
				return fmt.Errorf("user ssh key: %w", err)
			}
			owned = append(owned, idRSA)
		}
		idContainer := filepath.Join(d.Work, ContainerKeyFile)
		if err := atomicfile.Write(idContainer, []byte(f.User.PrivateKey), 0o600); err != nil {
			return fmt.Errorf("user ssh key: %w", err)
		}
		owned = append(owned, idContainer)
	}

	if f.UID >= 0 || f.GID >= 0 {
		for _, path := range owned {
			if err := os.Lchown(path, f.UID, f.GID); err != nil {
				return fmt.Errorf("ssh file owner: %w", err)
			}
		}
	}
	return nil
}

// newHostKey makes an ed25519 host key in OpenSSH PEM form. Upstream has
// dropbearkey make an RSA key in dropbear's own format; the runner's sshd
// reads OpenSSH keys, and ed25519 is instant to make.
func newHostKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ssh host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("encode ssh host key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}
