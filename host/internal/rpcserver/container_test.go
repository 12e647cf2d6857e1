package rpcserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// TestKernelContainerAsUpstreamOverRPC creates kernels through
// create_kernels as the 26.8 manager calls it and checks the container as
// upstream's agent/docker/agent.py makes it: a local image (is_local)
// known only by its short name, resource_opts.shmem as /dev/shm with the
// memory limit unchanged, nofile 1048576 and memlock unlimited, the
// local log driver, ai.backend.owner = the agent id, the operator's extra
// container options; and agent/agent.py's architecture check.
func TestKernelContainerAsUpstreamOverRPC(t *testing.T) {
	docker := kerneltest.Docker(t)
	busybox := kerneltest.BuildBusybox(t, docker)
	// The image exists only here, with no registry part in its name.
	const localImage = "mylab/tool:1"
	if _, err := docker.ImageTag(context.Background(), client.ImageTagOptions{Source: busybox, Target: localImage}); err != nil {
		t.Fatalf("tag %s: %v", localImage, err)
	}
	t.Cleanup(func() {
		_, _ = docker.ImageRemove(context.Background(), localImage, client.ImageRemoveOptions{})
	})
	extraOpts := filepath.Join(t.TempDir(), kernel.ExtraContainerOptsName)
	if err := os.WriteFile(extraOpts, []byte(`{"Labels": {"site.example/extra": "yes"}, "HostConfig": {"CapAdd": ["SYS_PTRACE"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}

	runnerPath := kerneltest.RunnerBinary(t)
	plugins, allocator := kerneltest.CPUPlugin(t)
	ports := kerneltest.Ports(t)
	agentID := fmt.Sprintf("rpc-container-agent-%d", rand.Uint64())
	m, err := kernel.New(kernel.Config{
		AgentID: agentID, ScratchRoot: t.TempDir(), KernelUID: 1000, KernelGID: 1000, RunnerPath: runnerPath,
		CreationConcurrency: 2, StopTimeout: 2 * time.Second, ReconcileInterval: time.Second,
		ExtraContainerOptsFiles: []string{filepath.Join(t.TempDir(), "absent.json"), extraOpts},
		Engine:                  kernel.NewDockerEngine(docker), Allocator: allocator, Plugins: plugins, Ports: ports, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kerneltest.RemoveLabelled(t, docker, kernel.LabelAgentID, agentID) })
	runManager(t, m)
	_, c := kernelServer(t, m, ports, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sid, kid := randomUUID(), randomUUID()
	const memLimit = 268435456
	ref := pickleImageRef("tool", "mylab", "1", "cr.example.com", kernel.NodeArchitecture(), true)
	cfg := managerConfig(t, kid, sid, "cr.example.com/mylab/tool:1").with("mounts", []any{}).
		with("resource_slots", obj("cpu", "1", "mem", fmt.Sprint(memLimit))).
		with("resource_opts", obj("shmem", int64(1<<30)))
	got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, map[string]mpExt{kid: ref}), nil)
	if err != nil {
		t.Fatalf("create_kernels of a local image: %v", err)
	}
	res := got.([]any)[0].(wiremsg.Map)
	containerID, _ := res["container_id"].(string)

	insp, err := docker.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ct := insp.Container
	if ct.Config.Image != localImage {
		t.Errorf("container image %q; want the short name %q", ct.Config.Image, localImage)
	}
	if ct.HostConfig.ShmSize != 1<<30 || ct.HostConfig.Memory != memLimit {
		t.Errorf("ShmSize %d, Memory %d; want 1 GiB and the allocated %d", ct.HostConfig.ShmSize, ct.HostConfig.Memory, memLimit)
	}
	// A terminal and an open stdin, as upstream's kernels (the runner's
	// children run in sessions of their own, so the shell does not stop on
	// the terminal's job control).
	if !ct.Config.Tty || !ct.Config.OpenStdin {
		t.Errorf("Tty %v, OpenStdin %v; want both", ct.Config.Tty, ct.Config.OpenStdin)
	}
	if lc := ct.HostConfig.LogConfig; lc.Type != "local" || lc.Config["max-file"] != "5" || lc.Config["max-size"] != "2097152" || lc.Config["compress"] != "false" {
		t.Errorf("log config %+v", lc)
	}
	labels := ct.Config.Labels
	if labels[kernel.LabelOwner] != agentID || labels[kernel.LabelOwnerUserID] != "f38dea23-50fa-42a0-b5ae-338f5f4693f4" {
		t.Errorf("owner labels: %s=%q %s=%q", kernel.LabelOwner, labels[kernel.LabelOwner], kernel.LabelOwnerUserID, labels[kernel.LabelOwnerUserID])
	}
	if labels["site.example/extra"] != "yes" || !strings.Contains(strings.Join(ct.HostConfig.CapAdd, ","), "SYS_PTRACE") || !strings.Contains(strings.Join(ct.HostConfig.CapAdd, ","), "IPC_LOCK") {
		t.Errorf("extra container options not merged: labels %v, CapAdd %v", labels, ct.HostConfig.CapAdd)
	}
	if _, err := os.Stat("/etc/localtime"); err == nil {
		found := false
		for _, mt := range ct.Mounts {
			if mt.Destination == "/etc/localtime" && !mt.RW {
				found = true
			}
		}
		if !found {
			t.Errorf("/etc/localtime not mounted read-only: %+v", ct.Mounts)
		}
	}

	execRes, err := invokeRaw(ctx, c, "execute", []any{sid, kid, int64(4), "run-1", "query",
		"df -k /dev/shm | tail -n 1; echo memlock=$(ulimit -l); echo nofile=$(ulimit -n)", obj(), 10.0}, nil)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	var stdout strings.Builder
	for _, item := range execRes.(wiremsg.Map)["console"].([]any) {
		if pair := item.([]any); pair[0] == "stdout" {
			stdout.WriteString(pair[1].(string))
		}
	}
	out := stdout.String()
	if fields := strings.Fields(strings.SplitN(out, "\n", 2)[0]); len(fields) < 2 || fields[1] != "1048576" {
		t.Errorf("df -k /dev/shm: %q; want 1048576 KiB", out)
	}
	// Upstream asks for nofile 1048576 and memlock unlimited, lowered to
	// the agent's own limits (get_safe_ulimit): where the agent runs
	// unlimited (a normal host) the kernel sees exactly those.
	wantMemlock, wantNofile := "unlimited", int64(1048576)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err == nil && lim.Cur != unix.RLIM_INFINITY {
		wantMemlock = fmt.Sprint(lim.Cur / 1024)
	}
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur != unix.RLIM_INFINITY && int64(lim.Cur) < wantNofile {
		wantNofile = int64(lim.Cur)
	}
	if wantMemlock != "unlimited" || wantNofile != 1048576 {
		t.Logf("this agent's own limits are memlock %s KiB, nofile %d: the kernel gets those (get_safe_ulimit)", wantMemlock, wantNofile)
	}
	if !strings.Contains(out, "memlock="+wantMemlock+"\n") || !strings.Contains(out, fmt.Sprintf("nofile=%d\n", wantNofile)) {
		t.Errorf("ulimits inside the kernel: %q; want memlock %s and nofile %d", out, wantMemlock, wantNofile)
	}
	if ok, err := invokeRaw(ctx, c, "check_creating", []any{kid}, nil); err != nil || ok != true {
		t.Errorf("check_creating of a running kernel: %v, %v; want True as agent/server.py", ok, err)
	}

	// Another architecture's image is refused by name before any pull.
	other := "aarch64"
	if kernel.NodeArchitecture() == other {
		other = "x86_64"
	}
	armKernel := randomUUID()
	armRef := pickleImageRef("tool", "mylab", "1", "cr.example.com", other, true)
	got, err = invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{
		armKernel: managerConfig(t, armKernel, sid, "cr.example.com/mylab/tool:1").with("mounts", []any{}),
	}, map[string]mpExt{armKernel: armRef}), nil)
	wantFailure(t, "an image of another architecture", got, err, "ImageArchitectureMismatchError", "cannot run "+other+" image")

	if _, err := invokeRaw(ctx, c, "destroy_kernel", []any{kid, sid, "user-requested"}, nil); err != nil {
		t.Fatalf("destroy_kernel: %v", err)
	}
}
