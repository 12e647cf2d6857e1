package enginetest

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// What the contract cannot ask of Docker on demand: an OOM kill, a log
// written, an exec's answer, a saved image. The Docker tests of the kernel
// package check these against the real engine (lifecycle_events_test.go's
// OOM kernel, commit_test.go's saved image).
func TestFakeBeyondTheContract(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := NewFake()
	var cfg dockerspec.DockerOCIImageConfig
	cfg.Cmd = []string{"/bin/sh"}
	imageID := f.AddImage("busybox", cfg, "amd64")
	msgs, errs := f.ContainerEvents(ctx, "k=v")
	id, err := f.ContainerCreate(ctx, kernel.ContainerSpec{Name: "c1", Config: &container.Config{Image: "busybox", Labels: map[string]string{"k": "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	insp, err := f.ContainerInspect(ctx, "c1")
	if err != nil || insp.ID != id || insp.Image != imageID || len(insp.Config.Cmd) != 1 || insp.Config.Cmd[0] != "/bin/sh" {
		t.Fatalf("inspect by name: %+v, %v; want the image's Cmd", insp, err)
	}
	if err := f.ImageRemove(ctx, "busybox"); !cerrdefs.IsConflict(err) {
		t.Errorf("remove an image a container uses: %v, want conflict", err)
	}

	if err := f.ContainerStart(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.HandleExec(func(containerID, user string, cmd []string) kernel.ExecResult {
		return kernel.ExecResult{Output: []byte(user + ":" + cmd[0]), ExitCode: 7}
	})
	if res, err := f.ContainerExec(ctx, id, "root", []string{"id"}); err != nil || string(res.Output) != "root:id" || res.ExitCode != 7 {
		t.Errorf("exec: %+v, %v", res, err)
	}
	if got := f.Execs(); len(got) != 1 || got[0].ContainerID != id || got[0].User != "root" {
		t.Errorf("execs: %+v", got)
	}
	if err := f.Log(id, "one\ntwo\nthree\n"); err != nil {
		t.Fatal(err)
	}
	if out, err := f.ContainerLogs(ctx, id, 2); err != nil || out != "two\nthree\n" {
		t.Errorf("last two lines: %q, %v", out, err)
	}
	if out, err := f.ContainerLogs(ctx, id, 0); err != nil || out != "one\ntwo\nthree\n" {
		t.Errorf("whole log: %q, %v", out, err)
	}

	if err := f.OOMKill(id); err != nil {
		t.Fatal(err)
	}
	for _, want := range []events.Action{events.ActionOOM, events.ActionDie} {
		select {
		case msg := <-msgs:
			if msg.Action != want || msg.Actor.ID != id || msg.Actor.Attributes["k"] != "v" || msg.Actor.Attributes["name"] != "c1" {
				t.Errorf("event %+v, want %s of %s", msg, want, id)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(time.Minute):
			t.Fatalf("no %s event", want)
		}
	}
	insp, err = f.ContainerInspect(ctx, id)
	if err != nil || insp.State.Running || !insp.State.OOMKilled || insp.State.ExitCode != ExitCodeKilled {
		t.Errorf("after the OOM kill: %+v, %v", insp.State, err)
	}
	// The fake hands out copies: changing one changes nothing in it.
	insp.Config.Labels["k"] = "changed"
	if again, _ := f.ContainerInspect(ctx, id); again.Config.Labels["k"] != "v" {
		t.Error("an inspect result shares the fake's state")
	}

	rc, err := f.ImageSave(ctx, imageID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var manifest []struct{ Config string }
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(manifest) != 1 || manifest[0].Config == "" {
		t.Errorf("saved manifest %+v", manifest)
	}
	cancel()
	if err := <-errs; err != context.Canceled {
		t.Errorf("event stream ended with %v, want its context's error", err)
	}
}
