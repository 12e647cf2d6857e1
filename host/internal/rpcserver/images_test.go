package rpcserver

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/images/registrytest"
	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/session"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

const (
	registryUser     = "manager-user"
	registryPassword = "registry-pw"
)

// recorder keeps what the agent would emit, in order, and fails the test
// on an event the 26.8 manager could not decode (managertest, strictly).
type recorder struct {
	t    testing.TB
	mu   sync.Mutex
	list []string
	evs  []events.Event
}

func (r *recorder) Emit(_ context.Context, ev events.Event) error {
	packed, err := wiremsg.Marshal(ev.Args())
	if err == nil {
		_, err = managertest.DecodeArgs(ev.Name(), packed)
	}
	if err != nil {
		r.t.Errorf("the manager cannot decode %s: %v", ev.Name(), err)
	}
	r.add(ev.Name(), ev)
	return nil
}

func (r *recorder) add(name string, ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, name)
	r.evs = append(r.evs, ev)
}

func (r *recorder) take() ([]string, []events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	names, evs := r.list, r.evs
	r.list, r.evs = nil, nil
	return names, evs
}

// imageFixture is the registry with the busybox image and its variant,
// and the image service the methods use.
type imageFixture struct {
	*registrytest.Images
	images *images.Service
}

func newImageFixture(t *testing.T) *imageFixture {
	t.Helper()
	docker := kerneltest.Docker(t)
	base := kerneltest.BuildBusybox(t, docker)
	f := &imageFixture{Images: registrytest.StartImages(t, docker, base, registryUser, registryPassword, "baiagent-test/rpc-variant")}
	f.images = images.New(docker, images.Options{PullTimeout: time.Minute, KernelLabel: kernel.LabelKernelID, Logger: zerolog.Nop()})
	t.Cleanup(f.images.Close)
	return f
}

// imageConfig is the sessionapi.ImageConfig the manager sends for p.
func (f *imageFixture) imageConfig(p registrytest.Pushed, password, autoPull, digest string) kv {
	var d any
	if digest != "" {
		d = digest
	}
	return obj(
		"canonical", p.Ref, "project", "test", "architecture", "x86_64", "digest", d, "repo_digest", nil,
		"registry", obj("name", f.Registry.Host, "url", "http://"+f.Registry.Host, "username", registryUser, "password", password),
		"labels", obj(), "is_local", false, "auto_pull", pickleEnum("AutoPullBehavior", autoPull),
	)
}

// localState puts the engine in a case's state for the busybox name:
// "" absent, "same" the registry's image, "other" the variant under that name.
func (f *imageFixture) localState(t *testing.T, state string) {
	t.Helper()
	ctx := context.Background()
	registrytest.RemoveImage(t, f.Docker, f.Busybox.Ref)
	switch state {
	case "same":
		img := images.Image{Ref: f.Busybox.Ref, Registry: images.Registry{Username: registryUser, Password: registryPassword}}
		if err := f.images.Pull(ctx, img); err != nil {
			t.Fatalf("setup pull: %v", err)
		}
	case "other":
		if _, err := f.Docker.ImageTag(ctx, client.ImageTagOptions{Source: f.VariantLocal, Target: f.Busybox.Ref}); err != nil {
			t.Fatalf("setup tag: %v", err)
		}
	}
}

func (f *imageFixture) localID(ref string) string {
	insp, err := f.Docker.ImageInspect(context.Background(), ref)
	if err != nil {
		return ""
	}
	return insp.ID
}

// serve serves the kernel and image methods on a real ZeroMQ socket.
func serveImages(t *testing.T, km *testKernels, im *ImageMethods, ports *portpool.Pool) *callosum.Client {
	t.Helper()
	srv, err := New(Options{Endpoint: "tcp://127.0.0.1:*", AgentID: "i-test", PortRangeMin: 30000, PortRangeMax: 30010, Logger: zerolog.Nop()},
		Deps{Kernels: km, Ports: ports})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	RegisterKernelMethods(srv, km.KernelMethods)
	RegisterImageMethods(srv, im)
	serveUntilCleanup(t, srv, im.Close, km.Wait)
	return dial(t, srv.Endpoint(), callosum.ClientOptions{})
}

// realKernels is a kernel manager over the real engine.
func realKernels(t *testing.T, docker *client.Client) (*kernel.Manager, *portpool.Pool) {
	t.Helper()
	runnerPath := kerneltest.RunnerBinary(t)
	plugins, allocator := kerneltest.CPUPlugin(t)
	ports := kerneltest.Ports(t)
	agentID := fmt.Sprintf("rpc-images-agent-%d", rand.Uint64())
	m, err := kernel.New(kernel.Config{
		AgentID: agentID, ScratchRoot: t.TempDir(), KernelUID: 1000, KernelGID: 1000, RunnerPath: runnerPath,
		CreationConcurrency: 4, StopTimeout: 2 * time.Second, ReconcileInterval: time.Second,
		Engine: kernel.NewDockerEngine(docker), Allocator: allocator, Plugins: plugins, Ports: ports, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kerneltest.RemoveLabelled(t, docker, kernel.LabelAgentID, agentID) })
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = m.Run(runCtx) }()
	t.Cleanup(func() { stopRun(); <-runDone; m.Close() })
	return m, ports
}

func TestCreateKernelsPullsPerAutoPull(t *testing.T) {
	f := newImageFixture(t)
	m, ports := realKernels(t, f.Docker)
	hooks := recorder{t: t}
	km := newTestKernels(m, session.Options{
		KernelHost: "127.0.0.1", Images: f.images,
		OnPreparing: func(context.Context, string, string) { hooks.add("preparing", nil) },
		OnPulling:   func(_ context.Context, _, _, image string) { hooks.add("pulling "+image, nil) },
		OnCreating:  func(context.Context, string, string) { hooks.add("creating", nil) },
		OnStarted:   func(context.Context, string, string, map[string]any) { hooks.add("started", nil) },
	})
	im := NewImageMethods(session.NewImages(f.images), ImageMethodsOptions{AgentID: "i-test", Logger: zerolog.Nop()})
	c := serveImages(t, km, im, ports)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const repo = "test/busybox"
	pulling := "pulling " + f.Busybox.Ref

	cases := []struct {
		description string
		local       string // "", "same" or "other" (see localState)
		autoPull    string
		password    string
		digest      string
		wantPull    bool
		wantHooks   []string
		wantErr     string
		wantText    []string
	}{
		{description: "tag pulls a missing image with the registry's credentials", autoPull: "tag", password: registryPassword,
			wantPull: true, wantHooks: []string{"preparing", pulling, "creating", "started"}},
		{description: "digest keeps a local image whose ID is the manager's digest", local: "same", autoPull: "digest",
			password: registryPassword, digest: f.Busybox.ID, wantHooks: []string{"preparing", "creating", "started"}},
		{description: "digest pulls over a local image with another ID", local: "other", autoPull: "digest",
			password: registryPassword, digest: f.Busybox.ID, wantPull: true, wantHooks: []string{"preparing", pulling, "creating", "started"}},
		{description: "a wrong password fails as ImagePullFailedError saying authentication failed", autoPull: "tag", password: "wrong",
			wantHooks: []string{"preparing", pulling}, wantErr: "ImagePullFailedError",
			wantText: []string{f.Busybox.Ref, f.Registry.Host, "authentication failed"}},
		{description: "none with a missing image fails as ImageNotAvailable", autoPull: "none", password: registryPassword,
			wantHooks: []string{"preparing"}, wantErr: "ImageNotAvailable", wantText: []string{f.Busybox.Ref}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			f.localState(t, tc.local)
			hooks.take()
			sid, kid := randomUUID(), randomUUID()
			cfg := managerConfig(t, kid, sid, f.Busybox.Ref).with("mounts", []any{}).
				with("image", f.imageConfig(f.Busybox, tc.password, tc.autoPull, tc.digest)).
				with("auto_pull", pickleEnum("AutoPullBehavior", tc.autoPull))
			before := f.Registry.ManifestFetches(repo)
			got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, nil), nil)
			names, _ := hooks.take()
			if strings.Join(names, ", ") != strings.Join(tc.wantHooks, ", ") {
				t.Errorf("hooks %q, want %q", names, tc.wantHooks)
			}
			// Refused requests are not counted: only a pull with the right
			// credentials reaches the manifests.
			if fetched := f.Registry.ManifestFetches(repo) - before; (fetched > 0) != tc.wantPull {
				t.Errorf("%d manifest requests; want a pull: %v", fetched, tc.wantPull)
			}
			if tc.wantErr != "" {
				for _, text := range tc.wantText {
					wantFailure(t, tc.description, got, err, tc.wantErr, text)
				}
				return
			}
			if err != nil {
				t.Fatalf("create_kernels: %v", err)
			}
			if results, ok := got.([]any); !ok || len(results) != 1 || results[0].(wiremsg.Map)["id"] != kid {
				t.Errorf("create_kernels returned %#v", got)
			}
			if tc.wantPull {
				if id := f.localID(f.Busybox.Ref); id != f.Busybox.ID {
					t.Errorf("local image %s after the pull, want %s", id, f.Busybox.ID)
				}
			}
			if _, err := invokeRaw(ctx, c, "destroy_kernel", []any{kid, sid, "user-requested"}, nil); err != nil {
				t.Errorf("destroy_kernel: %v", err)
			}
		})
	}
}

func TestCheckAndPullOverRPC(t *testing.T) {
	f := newImageFixture(t)
	evs := recorder{t: t}
	km := newTestKernels(newFakeKernels(), session.Options{Images: f.images})
	im := NewImageMethods(session.NewImages(f.images), ImageMethodsOptions{AgentID: "i-test", Events: &evs, Logger: zerolog.Nop(),
		Now: func() time.Time { return time.Unix(1700000000, 500_000_000) }})
	c := serveImages(t, km, im, kerneltest.Ports(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cases := []struct {
		description string
		local       string
		autoPull    string
		password    string
		wantEvents  []string
		wantText    string // in the image_pull_failed / bgtask_failed message, or image_pull_finished's msg
		wantPresent bool
	}{
		{"a missing image is pulled", "", "tag", registryPassword,
			[]string{"bgtask_updated", "image_pull_started", "image_pull_finished", "bgtask_done"}, "", true},
		{"a present image is not pulled again", "same", "digest", registryPassword,
			[]string{"bgtask_updated", "image_pull_finished", "bgtask_done"}, "Image already exists", true},
		{"a wrong password fails the task", "", "tag", "wrong",
			[]string{"bgtask_updated", "image_pull_started", "image_pull_failed", "bgtask_failed"}, "authentication failed", false},
		{"none with a missing image fails before any image event", "", "none", registryPassword,
			[]string{"bgtask_updated", "bgtask_failed"}, "not available locally", false},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			f.localState(t, tc.local)
			evs.take()
			digest := ""
			if tc.local == "same" {
				digest = f.Busybox.ID
			}
			got, err := invokeRaw(ctx, c, "check_and_pull", []any{obj(f.Busybox.Ref, f.imageConfig(f.Busybox, tc.password, tc.autoPull, digest))}, nil)
			if err != nil {
				t.Fatalf("check_and_pull: %v", err)
			}
			answer, ok := got.(wiremsg.Map)
			taskHex, _ := answer[f.Busybox.Ref].(string)
			raw, hexErr := hex.DecodeString(taskHex)
			if !ok || len(answer) != 1 || hexErr != nil || len(raw) != 16 {
				t.Fatalf("check_and_pull returned %#v, want {canonical: 32 hex digits}", got)
			}
			var taskID wiremsg.UUID
			copy(taskID[:], raw)
			im.Wait()
			names, list := evs.take()
			if strings.Join(names, ", ") != strings.Join(tc.wantEvents, ", ") {
				t.Fatalf("events %q, want %q", names, tc.wantEvents)
			}
			checkImageEvents(t, list, taskID.String(), f.Busybox.Ref, f.Registry.Host, tc.wantText)
			if present := f.localID(f.Busybox.Ref) != ""; present != tc.wantPresent {
				t.Errorf("image present %v, want %v", present, tc.wantPresent)
			}
		})
	}

	// check_pulling is true while the task's pull is in flight.
	f.localState(t, "")
	release := f.Registry.Hold()
	defer release()
	if _, err := invokeRaw(ctx, c, "check_and_pull", []any{obj(f.Busybox.Ref, f.imageConfig(f.Busybox, registryPassword, "tag", ""))}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "check_pulling to say true during the pull", func() bool {
		pulling, err := invokeRaw(ctx, c, "check_pulling", []any{f.Busybox.Ref}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return pulling == true
	})
	if other, err := invokeRaw(ctx, c, "check_pulling", []any{f.Variant.Ref}, nil); err != nil || other != false {
		t.Errorf("check_pulling of an image nobody pulls: %v, %v", other, err)
	}
	release()
	im.Wait()
	if pulling, err := invokeRaw(ctx, c, "check_pulling", []any{f.Busybox.Ref}, nil); err != nil || pulling != false {
		t.Errorf("check_pulling after the pull: %v, %v", pulling, err)
	}
}

// checkImageEvents checks the events of one task: every bgtask event names
// it, every image event names the image with its ImageRef, and the message
// carries want.
func checkImageEvents(t *testing.T, list []events.Event, taskID, image, registry, want string) {
	t.Helper()
	wantRef := wiremsg.ImageRef{Name: "busybox", Project: "test", Tag: "1", Registry: registry, Architecture: "x86_64"}
	found := want == ""
	for _, ev := range list {
		var id, msg string
		var ref *wiremsg.ImageRef
		switch e := ev.(type) {
		case events.BgtaskUpdated:
			id, msg = e.TaskID, e.Message
		case events.BgtaskDone:
			id, msg = e.TaskID, e.Message
		case events.BgtaskFailed:
			id, msg = e.TaskID, e.Message
		case events.ImagePullStarted:
			ref = e.ImageRef
			if e.Image != image || e.AgentID != "i-test" || e.Timestamp != 1700000000.5 {
				t.Errorf("%+v", e)
			}
		case events.ImagePullFinished:
			ref, msg = e.ImageRef, e.Msg
			if e.Image != image || e.AgentID != "i-test" || e.Timestamp != 1700000000.5 {
				t.Errorf("%+v", e)
			}
		case events.ImagePullFailed:
			ref, msg = e.ImageRef, e.Msg
			if e.Image != image || e.AgentID != "i-test" {
				t.Errorf("%+v", e)
			}
		default:
			t.Errorf("unexpected event %T", ev)
		}
		if strings.HasPrefix(ev.Name(), "bgtask_") && id != taskID {
			t.Errorf("%s names task %s, want %s", ev.Name(), id, taskID)
		}
		if strings.HasPrefix(ev.Name(), "image_pull_") && (ref == nil || *ref != wantRef) {
			t.Errorf("%s image_ref %+v, want %+v", ev.Name(), ref, wantRef)
		}
		if want != "" && strings.Contains(msg, want) {
			found = true
		}
	}
	if !found {
		t.Errorf("no event message mentions %q", want)
	}
}

func TestPurgeImagesOverRPC(t *testing.T) {
	f := newImageFixture(t)
	km := newTestKernels(newFakeKernels(), session.Options{Images: f.images})
	im := NewImageMethods(session.NewImages(f.images), ImageMethodsOptions{AgentID: "i-test", Logger: zerolog.Nop()})
	c := serveImages(t, km, im, kerneltest.Ports(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range []registrytest.Pushed{f.Busybox, f.Variant} {
		if err := f.images.Pull(ctx, images.Image{Ref: p.Ref, Registry: images.Registry{Username: registryUser, Password: registryPassword}}); err != nil {
			t.Fatal(err)
		}
	}
	// A running kernel container from the variant.
	created, err := f.Docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: f.Variant.Ref, Cmd: []string{"sleep", "60"}, Labels: map[string]string{kernel.LabelKernelID: "k-purge-test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = f.Docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := f.Docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	unknown := f.Registry.Host + "/test/never-pulled:1"

	cases := []struct {
		description string
		images      []any
		force       bool
		// wantErrors holds, per image, "" for success or a text the error has.
		wantErrors []string
		wantGone   []bool
	}{
		{"an unused image goes, an unknown one and one a kernel runs from are reported", []any{f.Busybox.Ref, unknown, f.Variant.Ref}, false,
			[]string{"", "no such image", "in use by a running kernel"}, []bool{true, true, false}},
		{"force removes the image a kernel runs from", []any{f.Variant.Ref}, true, []string{""}, []bool{true}},
	}
	for _, tc := range cases {
		got, err := invokeRaw(ctx, c, "purge_images", []any{tc.images, tc.force, false}, nil)
		if err != nil {
			t.Fatalf("%s: purge_images: %v", tc.description, err)
		}
		responses, _ := got.(wiremsg.Map)["responses"].([]any)
		if len(responses) != len(tc.images) {
			t.Fatalf("%s: %#v", tc.description, got)
		}
		for i, r := range responses {
			resp := r.(wiremsg.Map)
			if resp["image"] != tc.images[i] {
				t.Errorf("%s: response %d is for %v, want %v", tc.description, i, resp["image"], tc.images[i])
			}
			switch msg := resp["error"].(type) {
			case nil:
				if tc.wantErrors[i] != "" {
					t.Errorf("%s: %v: no error, want one mentioning %q", tc.description, tc.images[i], tc.wantErrors[i])
				}
			case string:
				if tc.wantErrors[i] == "" || !strings.Contains(msg, tc.wantErrors[i]) {
					t.Errorf("%s: %v: error %q, want %q", tc.description, tc.images[i], msg, tc.wantErrors[i])
				}
			default:
				t.Errorf("%s: error is %T", tc.description, msg)
			}
			if gone := f.localID(tc.images[i].(string)) == ""; gone != tc.wantGone[i] {
				t.Errorf("%s: %v gone %v, want %v", tc.description, tc.images[i], gone, tc.wantGone[i])
			}
		}
	}
}

func TestImageMethodArguments(t *testing.T) {
	pushRef := pickleImageRef("img", "test", "1", "cr.example.com", "x86_64", false)
	docker := kerneltest.Docker(t)
	svc := images.New(docker, images.Options{Logger: zerolog.Nop()})
	t.Cleanup(svc.Close)
	km := newTestKernels(newFakeKernels(), session.Options{Images: svc})
	im := NewImageMethods(session.NewImages(svc), ImageMethodsOptions{AgentID: "i-test", Logger: zerolog.Nop()})
	c := serveImages(t, km, im, kerneltest.Ports(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cases := []struct {
		description string
		method      string
		args        []any
		wantErr     string
		wantText    string
	}{
		{"check_and_pull of a list", "check_and_pull", []any{[]any{"img"}}, "TypeError", "'image_configs' must be dict"},
		{"check_and_pull with a non-dict config", "check_and_pull", []any{obj("img", 5)}, "TypeError", `image_configs'[\"img\"]: must be dict, not int`},
		{"check_and_pull with a non-dict registry", "check_and_pull", []any{obj("img", obj("canonical", "img", "registry", 5))}, "TypeError", `[\"registry\"]: must be dict`},
		{"check_and_pull with an unknown auto_pull", "check_and_pull", []any{obj("img", obj("canonical", "img", "auto_pull", "sometimes"))}, "ValueError", "auto_pull"},
		{"check_and_pull without arguments", "check_and_pull", []any{}, "TypeError", "'image_configs'"},
		{"purge_images of a string", "purge_images", []any{"img", false, false}, "TypeError", "'image_canonicals' must be a list"},
		{"purge_images of a number in the list", "purge_images", []any{[]any{5}, false, false}, "TypeError", "'image_canonicals[0]'"},
		{"purge_images with a string force", "purge_images", []any{[]any{}, "yes", false}, "TypeError", "'force' must be bool"},
		{"purge_images with a None noprune", "purge_images", []any{[]any{}, false, nil}, "TypeError", "'noprune' must be bool"},
		{"purge_images without force", "purge_images", []any{[]any{}}, "TypeError", "'force'"},
		{"check_pulling of a number", "check_pulling", []any{5}, "TypeError", "'image'"},
		{"push_image of a canonical string", "push_image", []any{"r/img:1", obj("name", "r")}, "TypeError", "'image_ref' must be ImageRef, not str"},
		{"push_image with a list as registry_conf", "push_image", []any{pushRef, []any{}}, "TypeError", "'registry_conf': must be dict"},
		{"push_image with an int password", "push_image", []any{pushRef, obj("name", "r", "password", 5)}, "TypeError", `'registry_conf'[\"password\"]`},
		{"push_image without registry_conf", "push_image", []any{pushRef}, "TypeError", "'registry_conf'"},
	}
	for _, tc := range cases {
		got, err := invokeRaw(ctx, c, tc.method, tc.args, nil)
		wantFailure(t, tc.description, got, err, tc.wantErr, tc.wantText)
	}
	// An empty purge is an empty answer.
	if got, err := invokeRaw(ctx, c, "purge_images", []any{[]any{}, false, false}, nil); err != nil ||
		len(got.(wiremsg.Map)["responses"].([]any)) != 0 {
		t.Errorf("empty purge_images: %#v, %v", got, err)
	}
}

func TestCreateKernelsPullTimeout(t *testing.T) {
	f := newImageFixture(t)
	short := images.New(f.Docker, images.Options{PullTimeout: 300 * time.Millisecond, Logger: zerolog.Nop()})
	t.Cleanup(short.Close)
	fake := newFakeKernels()
	hooks := recorder{t: t}
	km := newTestKernels(fake, session.Options{Images: short,
		OnPulling:  func(_ context.Context, _, _, image string) { hooks.add("pulling "+image, nil) },
		OnCreating: func(context.Context, string, string) { hooks.add("creating", nil) },
	})
	im := NewImageMethods(session.NewImages(short), ImageMethodsOptions{AgentID: "i-test", Logger: zerolog.Nop()})
	c := serveImages(t, km, im, kerneltest.Ports(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.localState(t, "")
	release := f.Registry.Hold()
	defer release()
	sid, kid := randomUUID(), randomUUID()
	cfg := managerConfig(t, kid, sid, f.Busybox.Ref).with("mounts", []any{}).
		with("image", f.imageConfig(f.Busybox, registryPassword, "tag", "")).with("auto_pull", pickleEnum("AutoPullBehavior", "tag"))
	got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, nil), nil)
	for _, text := range []string{f.Busybox.Ref, f.Registry.Host, "timed out after 300ms"} {
		wantFailure(t, "a pull past api.pull-timeout", got, err, "ImagePullTimeoutError", text)
	}
	if names, _ := hooks.take(); strings.Join(names, ", ") != "pulling "+f.Busybox.Ref {
		t.Errorf("hooks %q, want only the pulling one", names)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.requests) != 0 {
		t.Errorf("the kernel service was asked to create %d kernels after a failed pull", len(fake.requests))
	}
}
