// Package registrytest runs a real OCI registry (go-containerregistry's
// pkg/registry) in the test process, behind HTTP basic auth on
// 127.0.0.1, which the Docker engine accepts as an insecure registry. The
// image tests push locally built images to it and let the engine pull
// them back: no external registry is reachable from the test machines.
package registrytest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/client"
)

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:<port>", the registry part of image names.
	Host     string
	Username string
	Password string

	mu        sync.Mutex
	manifests map[string]int // repo -> authenticated manifest requests
	refused   int            // requests refused for bad credentials
	held      chan struct{}  // while not nil, manifest requests wait for it to close
	holding   int            // manifest requests waiting for held
}

// Start serves a registry requiring username and password until the test
// ends.
func Start(t testing.TB, username, password string) *Registry {
	t.Helper()
	r := &Registry{Username: username, Password: password, manifests: map[string]int{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry listen: %v", err)
	}
	r.Host = ln.Addr().String()
	srv := &http.Server{Handler: r.basicAuth(inner), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return r
}

// basicAuth answers 401 with a Basic challenge, as a registry with
// htpasswd auth does, unless the request carries the right credentials.
func (r *Registry) basicAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		authorized := ok && subtle.ConstantTimeCompare([]byte(user), []byte(r.Username)) == 1 &&
			subtle.ConstantTimeCompare([]byte(pass), []byte(r.Password)) == 1
		// /v2/<repo>/manifests/<ref>: a pull asks for the manifest (GET,
		// or HEAD when the engine knows it already); nothing else does.
		// Hold stops it, refused or not, so that a test can watch a
		// pull in flight whatever its credentials.
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			if repo, _, found := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/manifests/"); found {
				r.mu.Lock()
				if authorized {
					r.manifests[repo]++
				}
				held := r.held
				if held != nil {
					r.holding++
				}
				r.mu.Unlock()
				if held != nil {
					select {
					case <-held:
					case <-req.Context().Done():
					}
					r.mu.Lock()
					r.holding--
					r.mu.Unlock()
					if req.Context().Err() != nil {
						return
					}
				}
			}
		}
		if !authorized {
			r.mu.Lock()
			if ok {
				r.refused++
			}
			r.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Holding is how many manifest requests are waiting for Hold's release.
func (r *Registry) Holding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holding
}

// ManifestFetches is how many authenticated manifest requests repo had.
func (r *Registry) ManifestFetches(repo string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifests[repo]
}

// Hold makes manifest requests wait until the returned release is called, so
// that a test can watch a pull in flight. Release is idempotent.
func (r *Registry) Hold() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.held = ch
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.held = nil
			r.mu.Unlock()
			close(ch)
		})
	}
}

// Refused is how many requests carried wrong credentials.
func (r *Registry) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// Pushed is an image in the registry.
type Pushed struct {
	// Ref is "<host>/<repo>:<tag>".
	Ref string
	// ID is the image ID the engine gives it after a pull ("sha256:<config digest>").
	ID string
	// ManifestDigest is its repo digest ("sha256:...").
	ManifestDigest string
}

// Push copies the engine's local image local to <host>/<repoTag> (e.g.
// "test/busybox:1"): docker save, then a registry write with the
// credentials. The engine gets no tag for it.
func (r *Registry) Push(t testing.TB, docker *client.Client, local, repoTag string) Pushed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	saved, err := docker.ImageSave(ctx, []string{local})
	if err != nil {
		t.Fatalf("docker save %s: %v", local, err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, saved)
	_ = saved.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("docker save %s: %v", local, err)
	}
	localTag, err := name.NewTag(local)
	if err != nil {
		t.Fatalf("tag %s: %v", local, err)
	}
	img, err := tarball.ImageFromPath(path, &localTag)
	if err != nil {
		t.Fatalf("read the saved %s: %v", local, err)
	}
	ref := r.Host + "/" + repoTag
	dst, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("parse %s: %v", ref, err)
	}
	if err := remote.Write(dst, img, remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password}), remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	config, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return Pushed{Ref: ref, ID: config.String(), ManifestDigest: manifest.String()}
}

// BuildVariant builds a one-label image on top of base and tags it as tag,
// so that a test has a second image whose ID differs from base's.
func BuildVariant(t testing.TB, docker *client.Client, base, tag, label string) string {
	t.Helper()
	dockerfile := []byte("FROM " + base + "\nLABEL registrytest.variant=\"" + label + "\"\n")
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(dockerfile); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := docker.ImageBuild(ctx, &ctxTar, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, Dockerfile: "Dockerfile"})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			break
		}
		if msg.Error != "" {
			t.Fatalf("build %s: %s", tag, msg.Error)
		}
	}
	insp, err := docker.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("image %s missing after build: %v", tag, err)
	}
	return insp.ID
}

// RemoveImage untags ref from the engine if it is there.
func RemoveImage(t testing.TB, docker *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true})
	if _, err := docker.ImageInspect(ctx, ref); err == nil {
		t.Fatalf("image %s is still present after removal", ref)
	}
}

// Images is a basic-auth registry holding the test busybox image (as
// <host>/test/busybox:1) and a variant of it with another image ID (as
// <host>/test/variant:1); the pushed tags and the variant's local build
// are removed from the engine when the test ends.
type Images struct {
	Docker   *client.Client
	Registry *Registry
	Busybox  Pushed
	Variant  Pushed
	// VariantLocal is the variant's local build tag.
	VariantLocal string
}

// StartImages starts the registry with username/password and pushes the
// two images; localPrefix names the variant's local build (one per test
// package, so that packages testing at once do not share it).
func StartImages(t testing.TB, docker *client.Client, base, username, password, localPrefix string) *Images {
	t.Helper()
	reg := Start(t, username, password)
	f := &Images{Docker: docker, Registry: reg, VariantLocal: localPrefix + ":" + strings.ReplaceAll(reg.Host, ":", "-")}
	BuildVariant(t, docker, base, f.VariantLocal, reg.Host)
	t.Cleanup(func() { RemoveImage(t, docker, f.VariantLocal) })
	f.Busybox = reg.Push(t, docker, base, "test/busybox:1")
	f.Variant = reg.Push(t, docker, f.VariantLocal, "test/variant:1")
	t.Cleanup(func() {
		RemoveImage(t, docker, f.Busybox.Ref)
		RemoveImage(t, docker, f.Variant.Ref)
	})
	return f
}

// LoadImage puts a tiny image into the engine without a registry or a
// build: one layer with one file, the given architecture (e.g. "arm64",
// which this host need not run) and labels in its config. A nil labels
// leaves the config without any. It returns the image ID; the tag is
// removed when the test ends.
func LoadImage(t testing.TB, docker *client.Client, tag, arch string, labels map[string]string) string {
	t.Helper()
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	body := []byte(tag + "\n") // one image ID per tag
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(layerTar.Bytes(), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := tarball.Write(ref, img, &archive); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := docker.ImageLoad(ctx, &archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load %s: %v", tag, err)
	}
	out, _ := io.ReadAll(res)
	_ = res.Close()
	insp, err := docker.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("image %s missing after load: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() { RemoveImage(t, docker, tag) })
	return insp.ID
}

// ConfigDigest is the config digest ("sha256:...", the image ID the engine
// gives it) of <host>/<repoTag> in the registry, read with the registry's
// credentials; an error when the registry does not have it.
func (r *Registry) ConfigDigest(ctx context.Context, repoTag string) (string, error) {
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password}), remote.WithContext(ctx))
	if err != nil {
		return "", err
	}
	config, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	return config.String(), nil
}
