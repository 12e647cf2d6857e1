package enginetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// Harness is an engine under the contract.
type Harness struct {
	Engine kernel.Engine
	// Image is a local image with a POSIX shell whose labels include
	// ImageLabels.
	Image       string
	ImageLabels map[string]string
	// Exit makes the process of a running contract container exit with
	// code, as if by itself (under Docker: by writing ExitFile).
	Exit func(t *testing.T, containerID string, code int)
}

// waitCmd is the command of the contract's containers: it runs until
// ExitFile holds an exit code, and ends with 143 on SIGTERM as the fake's
// processes do (the wait, unlike a busybox sleep, is interrupted by it).
func waitCmd() []string {
	return []string{"sh", "-c", `trap "exit 143" TERM; while [ ! -s ` + ExitFile + ` ]; do sleep 0.2 & wait $!; done; exit $(cat ` + ExitFile + `)`}
}

// ExitFile is where a contract container looks for its exit code.
const ExitFile = "/tmp/contract-exit"

// eventWait bounds the wait for an event that must come; it is no
// measure of speed.
const eventWait = time.Minute

// Contract checks that an engine behaves as the kernel manager relies on
// Docker behaving: the error classes it branches on, the container states
// it reads, the events it follows, and the networks it makes.
func Contract(t *testing.T, h Harness) {
	e := h.Engine
	tag := fmt.Sprintf("%016x", rand.Uint64())
	label := "baiagent.contract=" + tag
	labels := map[string]string{"baiagent.contract": tag}
	spec := func(name string) kernel.ContainerSpec {
		return kernel.ContainerSpec{
			Name:       name,
			Config:     &container.Config{Image: h.Image, Cmd: waitCmd(), Labels: labels},
			HostConfig: &container.HostConfig{},
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		list, err := e.ContainerList(ctx, label)
		if err != nil {
			t.Errorf("list contract containers: %v", err)
		}
		for _, c := range list {
			if err := e.ContainerRemove(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove contract container %s: %v", c.ID, err)
			}
		}
	})

	t.Run("images", func(t *testing.T) {
		ctx := context.Background()
		img, err := e.ImageInspect(ctx, h.Image)
		if err != nil {
			t.Fatalf("inspect %s: %v", h.Image, err)
		}
		for k, v := range h.ImageLabels {
			if img.Config == nil || img.Config.Labels[k] != v {
				t.Errorf("image label %s: %+v, want %q", k, img.Config, v)
			}
		}
		if _, err := e.ImageInspect(ctx, "baiagent-contract/missing-"+tag+":latest"); !cerrdefs.IsNotFound(err) {
			t.Errorf("inspect a missing image: %v, want not found", err)
		}
	})

	t.Run("missing containers are not found", func(t *testing.T) {
		ctx := context.Background()
		missing := "baiagent-contract-missing-" + tag
		_, inspectErr := e.ContainerInspect(ctx, missing)
		_, logsErr := e.ContainerLogs(ctx, missing, 0)
		_, execErr := e.ContainerExec(ctx, missing, "root", []string{"true"})
		_, commitErr := e.ContainerCommit(ctx, missing, kernel.CommitOptions{})
		for op, err := range map[string]error{
			"inspect": inspectErr, "start": e.ContainerStart(ctx, missing), "stop": e.ContainerStop(ctx, missing, time.Second),
			"remove": e.ContainerRemove(ctx, missing), "logs": logsErr, "exec": execErr, "commit": commitErr,
			"network connect": e.NetworkConnect(ctx, "bridge", missing),
		} {
			if !cerrdefs.IsNotFound(err) {
				t.Errorf("%s: %v, want not found", op, err)
			}
		}
	})

	t.Run("creation refusals", func(t *testing.T) {
		ctx := context.Background()
		name := "baiagent-contract-" + tag
		id, err := e.ContainerCreate(ctx, spec(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ContainerCreate(ctx, spec(name)); !cerrdefs.IsConflict(err) {
			t.Errorf("a second container named %s: %v, want conflict", name, err)
		}
		noImage := spec("")
		noImage.Config.Image = "baiagent-contract/missing-" + tag + ":latest"
		if _, err := e.ContainerCreate(ctx, noImage); !cerrdefs.IsNotFound(err) {
			t.Errorf("a missing image: %v, want not found", err)
		}
		badMount := spec("")
		badMount.HostConfig.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/nonexistent/baiagent-contract-" + tag, Target: "/mnt"}}
		if _, err := e.ContainerCreate(ctx, badMount); !cerrdefs.IsInvalidArgument(err) {
			t.Errorf("a missing bind source: %v, want invalid argument", err)
		}
		list, err := e.ContainerList(ctx, label)
		if err != nil || len(list) != 1 || list[0].ID != id {
			t.Errorf("containers after the refusals: %+v (%v), want only %s", list, err, id)
		}
		if err := e.ContainerRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
		// The name is free again.
		id, err = e.ContainerCreate(ctx, spec(name))
		if err != nil {
			t.Fatalf("create %s after removing its first container: %v", name, err)
		}
		if err := e.ContainerRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("lifecycle and events", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		msgs, errs := e.ContainerEvents(ctx, label)
		next := func(t *testing.T) events.Message {
			t.Helper()
			select {
			case msg := <-msgs:
				return msg
			case err := <-errs:
				t.Fatalf("event stream ended: %v", err)
			case <-time.After(eventWait):
				t.Fatal("no event")
			}
			return events.Message{}
		}
		wantDie := func(t *testing.T, id string, code int) {
			t.Helper()
			msg := next(t)
			if msg.Type != events.ContainerEventType || msg.Action != events.ActionDie || msg.Actor.ID != id ||
				msg.Actor.Attributes["exitCode"] != strconv.Itoa(code) || msg.Actor.Attributes["baiagent.contract"] != tag {
				t.Errorf("event %+v, want die of %s with exit code %d and the container's labels", msg, id, code)
			}
		}
		wantState := func(t *testing.T, id string, status container.ContainerState, running bool, code int) {
			t.Helper()
			insp, err := e.ContainerInspect(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if insp.ID != id || insp.State == nil || insp.State.Status != status || insp.State.Running != running || (!running && status != container.StateCreated && insp.State.ExitCode != code) {
				t.Errorf("state of %s: %+v, want %s (running %v, exit code %d)", id, insp.State, status, running, code)
			}
			list, err := e.ContainerList(ctx, label)
			if err != nil || len(list) != 1 || list[0].ID != id || list[0].State != status || list[0].Labels["baiagent.contract"] != tag {
				t.Errorf("list: %+v (%v), want %s %s", list, err, id, status)
			}
		}

		id, err := e.ContainerCreate(ctx, spec(""))
		if err != nil {
			t.Fatal(err)
		}
		insp, err := e.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h.ImageLabels {
			if insp.Config.Labels[k] != v {
				t.Errorf("container label %s = %q, want the image's %q", k, insp.Config.Labels[k], v)
			}
		}
		wantState(t, id, container.StateCreated, false, 0)
		if _, err := e.ContainerExec(ctx, id, "root", []string{"true"}); !cerrdefs.IsConflict(err) {
			t.Errorf("exec in a created container: %v, want conflict", err)
		}
		// A stranger without the label: its events must not reach us.
		other := spec("")
		other.Config.Labels = nil
		otherID, err := e.ContainerCreate(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.ContainerRemove(context.Background(), otherID) }()
		if err := e.ContainerStart(ctx, otherID); err != nil {
			t.Fatal(err)
		}
		if err := e.ContainerStop(ctx, otherID, 10*time.Second); err != nil {
			t.Fatal(err)
		}

		if err := e.ContainerStart(ctx, id); err != nil {
			t.Fatal(err)
		}
		wantState(t, id, container.StateRunning, true, 0)
		if err := e.ContainerStart(ctx, id); err != nil {
			t.Errorf("start a running container: %v", err)
		}
		if res, err := e.ContainerExec(ctx, id, "root", []string{"true"}); err != nil || res.ExitCode != 0 {
			t.Errorf("exec true: %+v, %v", res, err)
		}
		h.Exit(t, id, 3)
		wantDie(t, id, 3)
		wantState(t, id, container.StateExited, false, 3)
		if _, err := e.ContainerExec(ctx, id, "root", []string{"true"}); !cerrdefs.IsConflict(err) {
			t.Errorf("exec in an exited container: %v, want conflict", err)
		}

		if err := e.ContainerStop(ctx, id, time.Second); err != nil {
			t.Errorf("stop an exited container: %v", err)
		}

		// Removing a running container kills it.
		id2, err := e.ContainerCreate(ctx, spec(""))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ContainerStart(ctx, id2); err != nil {
			t.Fatal(err)
		}
		if err := e.ContainerRemove(ctx, id2); err != nil {
			t.Fatal(err)
		}
		wantDie(t, id2, ExitCodeKilled)
		if _, err := e.ContainerInspect(ctx, id2); !cerrdefs.IsNotFound(err) {
			t.Errorf("inspect a removed container: %v, want not found", err)
		}

		if err := e.ContainerRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
		if list, err := e.ContainerList(ctx, label); err != nil || len(list) != 0 {
			t.Errorf("list after removal: %+v, %v", list, err)
		}
		cancel()
		select {
		case <-errs:
		case <-time.After(eventWait):
			t.Error("the event stream did not end with its context")
		}
	})

	t.Run("stop ends the process with SIGTERM", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		msgs, _ := e.ContainerEvents(ctx, label)
		id, err := e.ContainerCreate(ctx, spec(""))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.ContainerRemove(context.Background(), id) }()
		if err := e.ContainerStart(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.ContainerStop(ctx, id, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-msgs:
			if msg.Action != events.ActionDie || msg.Actor.Attributes["exitCode"] != strconv.Itoa(ExitCodeStopped) {
				t.Errorf("event %+v, want die with exit code %d", msg, ExitCodeStopped)
			}
		case <-time.After(eventWait):
			t.Fatal("no die event")
		}
		insp, err := e.ContainerInspect(ctx, id)
		if err != nil || insp.State.ExitCode != ExitCodeStopped || insp.State.OOMKilled {
			t.Errorf("after stop: %+v, %v", insp.State, err)
		}
	})

	t.Run("networks", func(t *testing.T) {
		ctx := context.Background()
		name := "baiagent-contract-" + tag
		if _, err := e.NetworkInspect(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Errorf("inspect a missing network: %v, want not found", err)
		}
		if err := e.NetworkCreate(ctx, name, map[string]string{"baiagent.contract": tag}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.NetworkRemove(context.Background(), name) })
		// A second network of that name is a conflict from Docker 25 on;
		// older engines make it. The manager inspects before it creates
		// and copes with both, so the contract leaves it open.
		insp, err := e.NetworkInspect(ctx, name)
		if err != nil || insp.Name != name || insp.ID == "" || insp.Driver != "bridge" || insp.Labels["baiagent.contract"] != tag {
			t.Errorf("inspect %s: %+v, %v", name, insp, err)
		}
		if byID, err := e.NetworkInspect(ctx, insp.ID); err != nil || byID.Name != name {
			t.Errorf("inspect by id: %+v, %v", byID, err)
		}
		id, err := e.ContainerCreate(ctx, spec(""))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.NetworkConnect(ctx, name, id); err != nil {
			t.Errorf("connect: %v", err)
		}
		if err := e.ContainerRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.NetworkRemove(ctx, insp.ID); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
		if _, err := e.NetworkInspect(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Errorf("inspect a removed network: %v, want not found", err)
		}
		if err := e.NetworkRemove(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Errorf("remove a missing network: %v, want not found", err)
		}
	})

	t.Run("networks are looked up at start", func(t *testing.T) {
		ctx := context.Background()
		missing := "baiagent-contract-missing-" + tag
		inMode := spec("")
		inMode.HostConfig.NetworkMode = container.NetworkMode(missing)
		connected := spec("")
		for description, s := range map[string]kernel.ContainerSpec{"network mode": inMode, "connected": connected} {
			id, err := e.ContainerCreate(ctx, s)
			if err != nil {
				t.Fatalf("%s: create: %v", description, err)
			}
			if description == "connected" {
				if err := e.NetworkConnect(ctx, missing, id); err != nil {
					t.Errorf("%s: connect a created container: %v", description, err)
				}
			}
			if err := e.ContainerStart(ctx, id); !cerrdefs.IsNotFound(err) {
				t.Errorf("%s: start on a missing network: %v, want not found", description, err)
			}
			if insp, err := e.ContainerInspect(ctx, id); err != nil || insp.State.Running {
				t.Errorf("%s: after the failed start: %+v, %v", description, insp.State, err)
			}
			if err := e.ContainerRemove(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("commit", func(t *testing.T) {
		ctx := context.Background()
		id, err := e.ContainerCreate(ctx, spec(""))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.ContainerRemove(context.Background(), id) }()
		ref := "baiagent-contract/commit-" + tag + ":latest"
		imageID, err := e.ContainerCommit(ctx, id, kernel.CommitOptions{
			Reference: ref, Changes: []string{`LABEL "baiagent.committed"="a \"quoted\" value"`}, Comment: "contract",
		})
		if err != nil {
			t.Fatal(err)
		}
		img, err := e.ImageInspect(ctx, ref)
		if err != nil || img.ID != imageID || img.Config == nil || img.Config.Labels["baiagent.committed"] != `a "quoted" value` ||
			img.Config.Labels["baiagent.contract"] != tag {
			t.Errorf("committed image: %+v, %v", img, err)
		}
		if err := e.ImageRemove(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
			t.Errorf("inspect a removed image: %v, want not found", err)
		}
	})
}
