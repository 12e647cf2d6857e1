package images_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/images/registrytest"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

const (
	testUser     = "puller"
	testPassword = "s3cret-pw"
	kernelLabel  = "ai.backend.kernel-id"
)

// fixture is the registry with the busybox image and its variant.
type fixture struct{ *registrytest.Images }

func newFixture(t *testing.T) *fixture {
	t.Helper()
	docker := kerneltest.Docker(t)
	base := kerneltest.BuildBusybox(t, docker)
	return &fixture{registrytest.StartImages(t, docker, base, testUser, testPassword, "baiagent-test/images-variant")}
}

func (f *fixture) service(t *testing.T, timeout time.Duration) *images.Service {
	t.Helper()
	svc := images.New(f.Docker, images.Options{PullTimeout: timeout, KernelLabel: kernelLabel, Logger: zerolog.Nop()})
	t.Cleanup(svc.Close)
	return svc
}

func (f *fixture) image(p registrytest.Pushed, password string) images.Image {
	return images.Image{Ref: p.Ref, Registry: images.Registry{Name: f.Registry.Host, URL: "http://" + f.Registry.Host, Username: testUser, Password: password}}
}

func (f *fixture) localID(t *testing.T, ref string) string {
	t.Helper()
	insp, err := f.Docker.ImageInspect(context.Background(), ref)
	if err != nil {
		return ""
	}
	return insp.ID
}

func TestEnsureFollowsAutoPull(t *testing.T) {
	f := newFixture(t)
	svc := f.service(t, time.Minute)
	ctx := context.Background()
	const repo = "test/busybox"

	cases := []struct {
		description string
		// setup leaves the engine in the case's state: "" (no local tag),
		// "same" (the registry's image) or "other" (the variant under the same name).
		local    string
		policy   images.Policy
		mutate   func(img *images.Image)
		wantPull bool
		wantErr  error
		wantText []string
	}{
		{description: "tag pulls a missing image with the registry's credentials", local: "", policy: images.PolicyTag, wantPull: true},
		{description: "tag leaves a present image alone", local: "same", policy: images.PolicyTag},
		{description: "tag does not check the digest", local: "other", policy: images.PolicyTag,
			mutate: func(img *images.Image) { img.Digest = f.Busybox.ID }},
		{description: "none uses a present image", local: "same", policy: images.PolicyNone},
		{description: "none fails on a missing image", local: "", policy: images.PolicyNone,
			wantErr: images.ErrNotAvailable, wantText: []string{f.Busybox.Ref, "auto_pull is none"}},
		{description: "digest pulls a missing image", local: "", policy: images.PolicyDigest,
			mutate: func(img *images.Image) { img.Digest = f.Busybox.ID }, wantPull: true},
		{description: "digest keeps a local image whose ID matches", local: "same", policy: images.PolicyDigest,
			mutate: func(img *images.Image) { img.Digest = f.Busybox.ID }},
		{description: "digest keeps a local image whose repo digest matches", local: "same", policy: images.PolicyDigest,
			mutate: func(img *images.Image) {
				img.RepoDigest = f.Registry.Host + "/" + repo + "@" + f.Busybox.ManifestDigest
			}},
		{description: "digest replaces a local image with another ID", local: "other", policy: images.PolicyDigest,
			mutate: func(img *images.Image) { img.Digest = f.Busybox.ID }, wantPull: true},
		{description: "digest with no digest given keeps a present image", local: "other", policy: images.PolicyDigest},
		{description: "a wrong password fails as an authentication error", local: "", policy: images.PolicyTag,
			mutate:  func(img *images.Image) { img.Registry.Password = "wrong" },
			wantErr: images.ErrUnauthorized, wantText: []string{f.Busybox.Ref, f.Registry.Host, "authentication failed"}},
		{description: "no credentials fail as an authentication error", local: "", policy: images.PolicyTag,
			mutate:  func(img *images.Image) { img.Registry.Username, img.Registry.Password = "", "" },
			wantErr: images.ErrUnauthorized, wantText: []string{f.Busybox.Ref, "authentication failed"}},
		{description: "an unknown tag fails as a pull error, not an authentication one", local: "", policy: images.PolicyTag,
			mutate:  func(img *images.Image) { img.Ref = f.Registry.Host + "/" + repo + ":no-such-tag" },
			wantErr: images.ErrPullFailed, wantText: []string{"no-such-tag", f.Registry.Host}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			registrytest.RemoveImage(t, f.Docker, f.Busybox.Ref)
			switch tc.local {
			case "same":
				if err := svc.Pull(ctx, f.image(f.Busybox, testPassword)); err != nil {
					t.Fatalf("setup pull: %v", err)
				}
			case "other":
				if _, err := f.Docker.ImageTag(ctx, client.ImageTagOptions{Source: f.VariantLocal, Target: f.Busybox.Ref}); err != nil {
					t.Fatalf("setup tag: %v", err)
				}
			}
			img := f.image(f.Busybox, testPassword)
			if tc.mutate != nil {
				tc.mutate(&img)
			}
			before := f.Registry.ManifestFetches(repo)
			var hookCalls int
			pulled, err := svc.Ensure(ctx, img, tc.policy, func() { hookCalls++ })
			if tc.wantErr != nil {
				t.Logf("error: %v", err)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr == images.ErrPullFailed && errors.Is(err, images.ErrUnauthorized) {
					t.Errorf("error %v is reported as an authentication failure", err)
				}
				for _, text := range tc.wantText {
					if !strings.Contains(err.Error(), text) {
						t.Errorf("error %q does not mention %q", err, text)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			fetched := f.Registry.ManifestFetches(repo) - before
			if pulled != tc.wantPull || (fetched > 0) != tc.wantPull || (hookCalls == 1) != tc.wantPull {
				t.Errorf("pulled %v, manifest fetches %d, onPull calls %d; want a pull: %v", pulled, fetched, hookCalls, tc.wantPull)
			}
			if tc.wantPull {
				if id := f.localID(t, f.Busybox.Ref); id != f.Busybox.ID {
					t.Errorf("local image %s after the pull, want the registry's %s", id, f.Busybox.ID)
				}
			}
		})
	}
	if f.Registry.Refused() == 0 {
		t.Error("the registry never refused a credential: the wrong-password case proved nothing")
	}
}

func TestConcurrentPullsShareOne(t *testing.T) {
	f := newFixture(t)
	svc := f.service(t, time.Minute)
	ctx := context.Background()
	const repo = "test/variant"
	img := f.image(f.Variant, testPassword)

	// Pulls alone, to learn how many manifest requests one makes once the
	// engine has seen the image (the first pull asks more).
	var perPull int
	for range 2 {
		registrytest.RemoveImage(t, f.Docker, img.Ref)
		before := f.Registry.ManifestFetches(repo)
		if err := svc.Pull(ctx, img); err != nil {
			t.Fatal(err)
		}
		perPull = f.Registry.ManifestFetches(repo) - before
	}
	registrytest.RemoveImage(t, f.Docker, img.Ref)

	release := f.Registry.Hold()
	defer release()
	before := f.Registry.ManifestFetches(repo)
	const pullers = 4
	errs := make(chan error, pullers)
	go func() { errs <- svc.Pull(ctx, img) }()
	testutil.Eventually(t, 30*time.Second, "the first pull to be in flight", func() bool { return svc.IsPulling(img.Ref) && f.Registry.ManifestFetches(repo) > before })
	if svc.IsPulling(f.Busybox.Ref) {
		t.Error("IsPulling does not tell the image in flight from another")
	}
	var wg sync.WaitGroup
	for range pullers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- svc.Pull(ctx, img)
		}()
	}
	// A waiter whose context ends stops waiting; the pull goes on.
	shortCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := svc.Pull(shortCtx, img); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a waiter with an expired context got %v", err)
	}
	release()
	wg.Wait()
	for range pullers {
		if err := <-errs; err != nil {
			t.Errorf("pull: %v", err)
		}
	}
	if got := f.Registry.ManifestFetches(repo) - before; got != perPull {
		t.Errorf("%d concurrent pullers made %d manifest fetches, one pull makes %d", pullers, got, perPull)
	}
	if svc.IsPulling(img.Ref) {
		t.Error("IsPulling is still true after the pull")
	}
	if id := f.localID(t, img.Ref); id != f.Variant.ID {
		t.Errorf("local image %s, want %s", id, f.Variant.ID)
	}
}

// A pull in flight is joined only by callers with the same credentials: a
// caller whose own credentials are good does not inherit the failure of
// one whose are wrong.
func TestPullsWithOtherCredentialsDoNotJoin(t *testing.T) {
	f := newFixture(t)
	svc := f.service(t, time.Minute)
	ctx := context.Background()
	good, wrong := f.image(f.Variant, testPassword), f.image(f.Variant, "not-"+testPassword)
	registrytest.RemoveImage(t, f.Docker, good.Ref)

	release := f.Registry.Hold()
	defer release()
	wrongErr, goodErr := make(chan error, 1), make(chan error, 1)
	go func() { wrongErr <- svc.Pull(ctx, wrong) }()
	testutil.Eventually(t, 30*time.Second, "the pull with wrong credentials to reach the registry", func() bool { return f.Registry.Holding() == 1 })
	if !svc.IsPulling(good.Ref) {
		t.Error("IsPulling is false while a pull is in flight")
	}
	go func() { goodErr <- svc.Pull(ctx, good) }()
	testutil.Eventually(t, 30*time.Second, "the pull with good credentials to reach the registry on its own", func() bool { return f.Registry.Holding() == 2 })
	release()
	if err := <-wrongErr; !errors.Is(err, images.ErrUnauthorized) {
		t.Errorf("pull with wrong credentials: %v, want %v", err, images.ErrUnauthorized)
	}
	if err := <-goodErr; err != nil {
		t.Errorf("pull with good credentials: %v", err)
	}
	if id := f.localID(t, good.Ref); id != f.Variant.ID {
		t.Errorf("local image %q, want %s", id, f.Variant.ID)
	}
}

func TestPullTimeout(t *testing.T) {
	f := newFixture(t)
	svc := f.service(t, 500*time.Millisecond)
	img := f.image(f.Variant, testPassword)
	registrytest.RemoveImage(t, f.Docker, img.Ref)
	release := f.Registry.Hold()
	defer release()
	started := time.Now()
	err := svc.Pull(context.Background(), img)
	if !errors.Is(err, images.ErrPullTimeout) || !errors.Is(err, images.ErrPullFailed) {
		t.Fatalf("error %v, want a pull timeout", err)
	}
	if took := time.Since(started); took > 30*time.Second {
		t.Errorf("the timed-out pull took %s", took)
	}
	for _, text := range []string{img.Ref, f.Registry.Host, "timed out after 500ms"} {
		if !strings.Contains(err.Error(), text) {
			t.Errorf("error %q does not mention %q", err, text)
		}
	}
	if svc.IsPulling(img.Ref) {
		t.Error("IsPulling is still true after the timeout")
	}
}

func TestRemove(t *testing.T) {
	f := newFixture(t)
	svc := f.service(t, time.Minute)
	ctx := context.Background()
	img := f.image(f.Variant, testPassword)
	if err := svc.Pull(ctx, img); err != nil {
		t.Fatal(err)
	}
	// A running kernel container keeps the image unless forced.
	created, err := f.Docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: img.Ref, Cmd: []string{"sleep", "60"}, Labels: map[string]string{kernelLabel: "k-images-test"}},
	})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		_, _ = f.Docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := f.Docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}

	cases := []struct {
		description string
		ref         string
		opts        images.RemoveOptions
		wantErr     error
		wantGone    bool
	}{
		{"an unknown image is reported", f.Registry.Host + "/test/never-pushed:1", images.RemoveOptions{}, images.ErrNotFound, true},
		{"an image a running kernel uses is refused", img.Ref, images.RemoveOptions{}, images.ErrInUse, false},
		{"another tag of that image goes: only the name is dropped", f.VariantLocal, images.RemoveOptions{}, nil, true},
		{"the kernel's name, now the last tag, is still refused", img.Ref, images.RemoveOptions{}, images.ErrInUse, false},
		{"force removes it anyway", img.Ref, images.RemoveOptions{Force: true}, nil, true},
	}
	for _, tc := range cases {
		err := svc.Remove(ctx, tc.ref, tc.opts)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("%s: error %v, want %v", tc.description, err, tc.wantErr)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.ref) {
			t.Errorf("%s: error %q does not name the image", tc.description, err)
		}
		if gone := f.localID(t, tc.ref) == ""; gone != tc.wantGone {
			t.Errorf("%s: image gone %v, want %v", tc.description, gone, tc.wantGone)
		}
	}

	// A kernel runs from the variant, not from busybox: a plain remove works
	// (also while other tests run kernels from busybox under another name).
	if err := svc.Pull(ctx, f.image(f.Busybox, testPassword)); err != nil {
		t.Fatal(err)
	}
	if err := svc.Remove(ctx, f.Busybox.Ref, images.RemoveOptions{}); err != nil {
		t.Errorf("remove an unused image: %v", err)
	}
	if f.localID(t, f.Busybox.Ref) != "" {
		t.Error("the unused image is still there")
	}
}
