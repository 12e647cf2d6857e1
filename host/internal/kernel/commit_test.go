package kernel_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
)

// withCommitPath sets image-commit-path.
func withCommitPath(path string) func(*kernel.Config) {
	return func(c *kernel.Config) { c.CommitPath = path }
}

func removeImageAtEnd(t *testing.T, e *env, ref string) {
	t.Cleanup(func() {
		_, err := e.docker.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove test image %s: %v", ref, err)
		}
	})
}

// TestCommitKernel commits a kernel to a tagged image with extra labels,
// runs a kernel of that image, and commits again into a tar.
func TestCommitKernel(t *testing.T) {
	e := newEnv(t)
	commitPath := t.TempDir()
	m := e.manager(t, withCommitPath(commitPath))
	start(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	create(t, m, request(e.kid("k-commit")))
	// The container's own file system is what a commit keeps (work/ is a
	// bind mount).
	wantOutput(t, run(t, m, e.kid("k-commit"), "w", runnerclient.ModeQuery, "echo committed > /tmp/made-in-kernel; echo ok"), 0, "ok\n")

	canonical := fmt.Sprintf("baiagent-test/commit-%d:v1", rand.Uint64())
	removeImageAtEnd(t, e, canonical)
	labels := map[string]string{"ai.backend.test.note": `spaces and "quotes"`, "com.example.owner": "user@example.com"}
	commit, err := m.StartCommit(kernel.CommitRequest{KernelID: e.kid("k-commit"), Subdir: "user@example.com", Canonical: canonical, ExtraLabels: labels})
	if err != nil {
		t.Fatalf("start commit: %v", err)
	}
	if status, err := m.CommitStatus(e.kid("k-commit"), "user@example.com"); err != nil || status != kernel.CommitOngoing {
		t.Errorf("status while committing: %q, %v; want ongoing", status, err)
	}
	if _, err := m.StartCommit(kernel.CommitRequest{KernelID: e.kid("k-commit"), Subdir: "user@example.com"}); !errors.Is(err, kernel.ErrCommitOngoing) {
		t.Errorf("a second commit meanwhile: %v, want ErrCommitOngoing", err)
	}
	if got := m.OngoingCommits(); len(got) != 1 || got[0] != e.kid("k-commit") {
		t.Errorf("ongoing commits %v, want [k-commit]", got)
	}
	imageID, err := commit.Run(ctx)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if status, err := m.CommitStatus(e.kid("k-commit"), "user@example.com"); err != nil || status != kernel.CommitReady {
		t.Errorf("status after the commit: %q, %v; want ready", status, err)
	}
	img, err := e.docker.ImageInspect(ctx, canonical)
	if err != nil {
		t.Fatalf("the committed image: %v", err)
	}
	if img.ID != imageID {
		t.Errorf("%s is %s, the commit made %s", canonical, img.ID, imageID)
	}
	got := img.Config.Labels
	for k, v := range labels {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	if got["ai.backend.kernelspec"] != "1" || got[kernel.LabelAgentID] != "" || got[kernel.LabelKernelID] != "" {
		t.Errorf("image labels %v: want the base image's kept and the container's identity blanked", got)
	}

	// A kernel of the committed image sees the file.
	req := request(e.kid("k-from-commit"))
	req.Image = canonical
	create(t, m, req)
	wantOutput(t, run(t, m, e.kid("k-from-commit"), "r", runnerclient.ModeQuery, "cat /tmp/made-in-kernel"), 0, "committed\n")
	if _, err := m.Destroy(ctx, e.kid("k-from-commit"), ""); err != nil {
		t.Fatal(err)
	}

	// With a filename the image is saved as a gzipped tar and removed.
	canonical2 := fmt.Sprintf("baiagent-test/commit-%d:v2", rand.Uint64())
	removeImageAtEnd(t, e, canonical2)
	commit, err = m.StartCommit(kernel.CommitRequest{KernelID: e.kid("k-commit"), Subdir: "user@example.com", Canonical: canonical2,
		Filename: "snapshot.tar.gz", ExtraLabels: map[string]string{"com.example.kind": "tar"}})
	if err != nil {
		t.Fatal(err)
	}
	wantPath := filepath.Join(commitPath, "user@example.com", "snapshot.tar.gz")
	if commit.Path != wantPath {
		t.Errorf("commit path %q, want %q", commit.Path, wantPath)
	}
	if _, err := commit.Run(ctx); err != nil {
		t.Fatalf("commit to a file: %v", err)
	}
	if cfg := imageConfigInTar(t, wantPath); cfg.Config.Labels["com.example.kind"] != "tar" {
		t.Errorf("the tar's image labels %v lack com.example.kind=tar", cfg.Config.Labels)
	}
	if _, err := e.docker.ImageInspect(ctx, canonical2); !cerrdefs.IsNotFound(err) {
		t.Errorf("the image saved to a file is still in Docker: %v", err)
	}
	if _, err := m.Destroy(ctx, e.kid("k-commit"), ""); err != nil {
		t.Fatal(err)
	}
}

// imageConfigInTar reads the image config of a `docker save` tar.
func imageConfigInTar(t *testing.T, path string) (cfg struct {
	Config struct{ Labels map[string]string } `json:"config"`
}) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not gzipped: %v", path, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if strings.HasSuffix(h.Name, ".json") || strings.HasPrefix(h.Name, "blobs/") {
			data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		}
	}
	var manifest []struct{ Config string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v (%d images)", err, len(manifest))
	}
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("image config %s: %v", manifest[0].Config, err)
	}
	return cfg
}

// TestCommitPathsStayInside: subdir and filename are one path component
// each; nothing is created for a refused request.
func TestCommitPathsStayInside(t *testing.T) {
	e := newEnv(t)
	parent := t.TempDir()
	commitPath := filepath.Join(parent, "commit")
	m := e.manager(t, withCommitPath(commitPath))
	start(t, m)
	create(t, m, request(e.kid("k-paths")))
	for _, tc := range []struct {
		description      string
		subdir, filename string
	}{
		{"a parent subdir", "..", ""},
		{"a subdir climbing out", "../outside", ""},
		{"an absolute subdir", "/etc", ""},
		{"a nested subdir", "a/b", ""},
		{"a backslash in the subdir", `a\b`, ""},
		{"an empty subdir", "", ""},
		{"the current dir as subdir", ".", ""},
		{"a parent filename", "user", ".."},
		{"a filename climbing out", "user", "../../x.tar"},
		{"an absolute filename", "user", "/tmp/x.tar"},
		{"a nested filename", "user", "d/x.tar"},
		{"the lock dir as filename", "user", "lock"},
	} {
		_, err := m.StartCommit(kernel.CommitRequest{KernelID: e.kid("k-paths"), Subdir: tc.subdir, Filename: tc.filename})
		if !errors.Is(err, kernel.ErrInvalidPath) {
			t.Errorf("%s: %v, want ErrInvalidPath", tc.description, err)
		}
		if _, err := m.CommitStatus(e.kid("k-paths"), tc.subdir); tc.filename == "" && !errors.Is(err, kernel.ErrInvalidPath) {
			t.Errorf("status with %s: %v, want ErrInvalidPath", tc.description, err)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("refused commits created %v", entries)
	}
	if _, err := m.StartCommit(kernel.CommitRequest{KernelID: e.kid("k-nobody"), Subdir: "user"}); !errors.Is(err, kernel.ErrKernelNotFound) {
		t.Errorf("commit of an unknown kernel: %v", err)
	}
	if _, err := e.manager(t).StartCommit(kernel.CommitRequest{KernelID: e.kid("k-paths"), Subdir: "user"}); !errors.Is(err, kernel.ErrNoCommitPath) {
		t.Errorf("commit without a commit path: %v", err)
	}
	if _, err := m.Destroy(context.Background(), e.kid("k-paths"), ""); err != nil {
		t.Fatal(err)
	}
}
