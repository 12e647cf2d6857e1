package rpcserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// clusterKeypair is a session keypair as the manager sends it, and its signer.
func clusterKeypair(t *testing.T) (kv, ssh.Signer) {
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
	return obj("public_key", string(ssh.MarshalAuthorizedKey(signer.PublicKey())), "private_key", string(pem.EncodeToMemory(block))), signer
}

// TestHostNetworkOverRPC pins upstream's host network plugin
// (agent/docker/intrinsic.py HostNetworkPlugin: NetworkMode host,
// ExtraHosts from cluster_ssh_port_mapping, intrinsic-ports.json), the
// sshd host port from cluster_ssh_port_mapping (agent/docker/agent.py
// start_container) and cluster.json (agent/agent.py create_kernel): two
// kernels of one session on the host's network reach each other by
// cluster hostname, and each one's sshd answers on its mapped port.
func TestHostNetworkOverRPC(t *testing.T) {
	a := newOpsAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sid := randomUUID()
	keypair, signer := clusterKeypair(t)
	type member struct {
		kid, host, role string
		port            int
	}
	// In host network mode the kernels' ports are the shared host's.
	members := []member{{randomUUID(), "main1", "main", testutil.FreePort(t, "0.0.0.0")}, {randomUUID(), "sub1", "sub", testutil.FreePort(t, "0.0.0.0")}}
	configs := map[string]kv{}
	refs := map[string]mpExt{}
	mapping := obj()
	for _, m := range members {
		configs[m.kid] = managerConfig(t, m.kid, sid, a.image).with("mounts", []any{}).
			with("resource_slots", obj("cpu", "0", "mem", "67108864")).with("cluster_hostname", m.host).
			with("cluster_role", m.role).with("auto_pull", pickleEnum("AutoPullBehavior", "none"))
		refs[m.kid] = pickleImageRef("busybox", "baiagent-test", "latest", "cr.example.com", kernel.NodeArchitecture(), true)
		mapping = append(mapping, wiremsg.KV{Key: m.host, Value: []any{"127.0.0.1", m.port}})
	}
	clusterInfo := func(networkConfig kv) kv {
		return obj("mode", goldenExt(t, wiremsg.ExtEnum, goldenClusterModeSingle), "size", len(members), "replicas", obj("main", 1, "sub", 1),
			"network_config", networkConfig, "ssh_keypair", keypair, "cluster_ssh_port_mapping", mapping)
	}

	// Modes this agent does not serve are refused by name, before anything
	// is made, instead of running the session on the default bridge.
	for _, tc := range []struct {
		description   string
		networkConfig kv
		name, text    string
	}{
		{"an overlay network plugin", obj("mode", "overlay", "network_name", "ov-1"), "RuntimeError", `mode\"]: unsupported network mode \"overlay\"`},
		{"a mode that is not a str", obj("mode", 3), "TypeError", `network_config\"][\"mode\"]`},
		{"bridge without a network_name", obj("mode", "bridge"), "KeyError", "network_name"},
	} {
		args := createArgs(t, sid, configs, refs)
		args[3] = clusterInfo(tc.networkConfig)
		got, err := a.call(ctx, "create_kernels", args...)
		wantFailure(t, tc.description, got, err, tc.name, tc.text)
	}
	if left := a.manager.List(); len(left) != 0 {
		t.Fatalf("refused creations left kernels: %+v", left)
	}

	args := createArgs(t, sid, configs, refs)
	args[3] = clusterInfo(obj("mode", "host"))
	got, err := a.call(ctx, "create_kernels", args...)
	if err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	t.Cleanup(func() {
		for _, m := range members {
			_, _ = a.call(context.Background(), "destroy_kernel", m.kid, sid, nil)
		}
	})
	results := map[string]wiremsg.Map{}
	for _, r := range got.([]any) {
		res := r.(wiremsg.Map)
		results[fmt.Sprint(res["id"])] = res
	}
	wantHosts := []string{"main1:127.0.0.1", "sub1:127.0.0.1"}
	for _, m := range members {
		info, err := a.manager.Get(m.kid)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.docker.ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hc := c.Container.HostConfig
		if hc.NetworkMode != "host" || !slices.Equal(hc.ExtraHosts, wantHosts) || len(hc.PortBindings) != 0 {
			t.Errorf("%s: NetworkMode %q ExtraHosts %v PortBindings %v; want host, %v, none", m.host, hc.NetworkMode, hc.ExtraHosts, hc.PortBindings, wantHosts)
		}
		var sshdPorts []any
		if res := results[m.kid]; res != nil {
			for _, sp := range res["service_ports"].([]any) {
				if sp := sp.(wiremsg.Map); sp["name"] == "sshd" {
					sshdPorts = sp["host_ports"].([]any)
				}
			}
		}
		if len(sshdPorts) != 1 || sshdPorts[0] != int64(m.port) {
			t.Errorf("%s: sshd host ports %v, want the mapped [%d] (results %v)", m.host, sshdPorts, m.port, results[m.kid])
		}
		config := filepath.Join(info.ScratchDir, "config")
		var intrinsic map[string]int
		if raw, err := os.ReadFile(filepath.Join(config, kernel.IntrinsicPortsFile)); err != nil || json.Unmarshal(raw, &intrinsic) != nil ||
			intrinsic["sshd"] != m.port || intrinsic["replin"] != info.ReplInPort || intrinsic["replout"] != info.ReplOutPort {
			t.Errorf("%s: %s %v (%v), want replin %d replout %d sshd %d", m.host, kernel.IntrinsicPortsFile, intrinsic, err, info.ReplInPort, info.ReplOutPort, m.port)
		}
		var cluster struct {
			Mode          string           `json:"mode"`
			NetworkConfig map[string]any   `json:"network_config"`
			Mapping       map[string][]any `json:"cluster_ssh_port_mapping"`
			Keypair       map[string]any   `json:"ssh_keypair"`
		}
		raw, err := os.ReadFile(filepath.Join(config, kernel.ClusterInfoFile))
		if err != nil || json.Unmarshal(raw, &cluster) != nil || cluster.Mode != "single-node" || cluster.NetworkConfig["mode"] != "host" ||
			fmt.Sprint(cluster.Mapping[m.host]) != fmt.Sprintf("[127.0.0.1 %d]", m.port) || cluster.Keypair["public_key"] == nil {
			t.Errorf("%s: %s = %s (%v)", m.host, kernel.ClusterInfoFile, raw, err)
		}
	}

	// main1 finds sub1 by its cluster hostname, and sub1's sshd answers
	// there on its mapped port.
	main, sub := members[0], members[1]
	banner := a.execStdout(t, ctx, sid, main.kid, fmt.Sprintf("grep -w sub1 /etc/hosts; echo | nc -w 3 sub1 %d | head -1", sub.port))
	if !strings.Contains(banner, "127.0.0.1\tsub1") || !strings.Contains(banner, "SSH-2.0-") {
		t.Errorf("from main1 to sub1:%d: %q, want the hosts entry and an SSH banner", sub.port, banner)
	}
	// A login with the cluster key on each mapped port reaches that
	// kernel, which reaches the other one by name in turn.
	for _, tc := range []struct{ from, to member }{{sub, main}, {main, sub}} {
		c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tc.from.port), &ssh.ClientConfig{
			User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Errorf("ssh to %s on %d: %v", tc.from.host, tc.from.port, err)
			continue
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.CombinedOutput(fmt.Sprintf("hostname; echo | nc -w 3 %s %d | head -1", tc.to.host, tc.to.port))
		_ = sess.Close()
		_ = c.Close()
		if lines := strings.SplitN(string(out), "\n", 2); err != nil || lines[0] != tc.from.host || len(lines) < 2 || !strings.HasPrefix(lines[1], "SSH-2.0-") {
			t.Errorf("ssh %s -> %s: %q, %v; want hostname %s, then %s's SSH banner", tc.from.host, tc.to.host, out, err, tc.from.host, tc.to.host)
		}
	}

	for _, m := range members {
		if _, err := a.call(ctx, "destroy_kernel", m.kid, sid, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.ports.InUse(); n != 0 {
		t.Errorf("%d host ports still assigned", n)
	}
}
