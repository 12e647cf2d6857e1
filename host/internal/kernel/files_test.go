package kernel_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
)

// workTree makes a host work dir with a file, a nested dir and symlinks
// inside and out of it.
func workTree(t testing.TB) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "work")
	outside = filepath.Join(base, "secret")
	for _, d := range []string{root + "/sub/deep", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(root+"/a.txt", []byte("a"), 0o644))
	must(os.WriteFile(outside+"/key", []byte("k"), 0o600))
	must(os.Symlink("sub/deep", root+"/inlink"))         // relative, inside
	must(os.Symlink("/home/work/sub", root+"/abslink"))  // absolute in the container's namespace
	must(os.Symlink(outside, root+"/hostlink"))          // absolute host path: outside /home/work
	must(os.Symlink("../../secret", root+"/sub/escape")) // relative escape
	must(os.Symlink("../a.txt", root+"/sub/up"))         // relative, stays inside
	must(os.Symlink("loop2", root+"/loop1"))             // cycle
	must(os.Symlink("loop1", root+"/loop2"))
	return root, outside
}

func TestResolveWorkPath(t *testing.T) {
	root, _ := workTree(t)
	cases := []struct {
		description string
		path        string
		want        string // relative to root; "" with wantErr
		wantErr     error
		wantText    string
	}{
		{description: "relative file", path: "a.txt", want: "a.txt"},
		{description: "absolute under /home/work", path: "/home/work/a.txt", want: "a.txt"},
		{description: "the work dir itself", path: "/home/work", want: "."},
		{description: "empty is the work dir", path: "", want: "."},
		{description: "dot-dot that stays inside", path: "sub/../a.txt", want: "a.txt"},
		{description: "missing nested path", path: "new/dir/f", want: "new/dir/f"},
		{description: "relative symlink inside", path: "inlink/x", want: "sub/deep/x"},
		{description: "absolute symlink in container namespace", path: "abslink/deep", want: "sub/deep"},
		{description: "symlink up but inside", path: "/home/work/sub/up", want: "a.txt"},
		{description: "dot-dot escape", path: "../secret/key", wantErr: kernel.ErrOutsideWork, wantText: "../secret/key"},
		{description: "absolute dot-dot escape", path: "/home/work/../../etc/passwd", wantErr: kernel.ErrOutsideWork, wantText: "/home/work/../../etc/passwd"},
		{description: "absolute outside", path: "/etc/passwd", wantErr: kernel.ErrOutsideWork, wantText: "/etc/passwd"},
		{description: "sibling prefix", path: "/home/workshop/x", wantErr: kernel.ErrOutsideWork, wantText: "/home/workshop/x"},
		{description: "symlink to a host path", path: "hostlink/key", wantErr: kernel.ErrOutsideWork, wantText: "hostlink/key"},
		{description: "relative symlink escape", path: "sub/escape/key", wantErr: kernel.ErrOutsideWork, wantText: "sub/escape/key"},
		{description: "symlink loop", path: "loop1", wantText: "too many levels"},
		{description: "NUL byte", path: "a\x00b", wantErr: kernel.ErrOutsideWork, wantText: "NUL"},
	}
	for _, tc := range cases {
		got, err := kernel.ResolveWorkPath(root, tc.path)
		if tc.wantText != "" {
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("%s: got %q, %v; want an error mentioning %q", tc.description, got, err, tc.wantText)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("%s: got %q, %v; want %q", tc.description, got, err, filepath.Join(root, tc.want))
		}
	}
}

func FuzzResolveWorkPath(f *testing.F) {
	for _, s := range []string{"a.txt", "/home/work/../x", "inlink/../../..", "abslink/../hostlink", "sub/escape", "/", "..", "loop1/x", "sub/up/.."} {
		f.Add(s)
	}
	root, _ := workTree(f)
	f.Fuzz(func(t *testing.T, p string) {
		got, err := kernel.ResolveWorkPath(root, p)
		if err != nil {
			return
		}
		if got != root && !strings.HasPrefix(got, root+"/") {
			t.Fatalf("%q resolved to %q, outside %q", p, got, root)
		}
		// No component of the result (that exists) is a symlink.
		for cur := got; cur != root; cur = filepath.Dir(cur) {
			if st, err := os.Lstat(cur); err == nil && st.Mode()&os.ModeSymlink != 0 {
				t.Fatalf("%q resolved to %q, which has the symlink %q", p, got, cur)
			}
		}
	})
}

// TestKernelFiles exercises the file methods on a real kernel.
func TestKernelFiles(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	start(t, m)
	created := create(t, m, request(e.kid("k-files")))
	id := created.KernelID
	work := filepath.Join(created.ScratchDir, "work")
	t.Cleanup(func() { _, _ = m.Destroy(t.Context(), id, "test") })

	if err := os.Symlink("/etc", filepath.Join(work, "etc")); err != nil {
		t.Fatal(err)
	}
	uploads := []struct {
		description string
		name        string
		data        string
		wantText    string
	}{
		{description: "nested upload", name: "dir/sub/hello.txt", data: "hello"},
		{description: "absolute upload", name: "/home/work/top.txt", data: "top"},
		{description: "overwrite", name: "top.txt", data: "top2"},
		{description: "upload escape via ..", name: "../evil", wantText: "../evil"},
		{description: "upload absolute outside", name: "/tmp/evil", wantText: "/tmp/evil"},
		{description: "upload through a symlink out", name: "etc/evil", wantText: "etc/evil"},
	}
	for _, tc := range uploads {
		err := m.UploadFile(id, tc.name, []byte(tc.data))
		if tc.wantText != "" {
			if !errors.Is(err, kernel.ErrOutsideWork) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("%s: got %v, want an outside-work error naming %q", tc.description, err, tc.wantText)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(work, "dir/sub/hello.txt")); err != nil || string(b) != "hello" {
		t.Errorf("uploaded file: %q, %v", b, err)
	}
	for _, p := range []string{"dir", "dir/sub", "dir/sub/hello.txt"} {
		st, err := os.Stat(filepath.Join(work, p))
		if err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 1000 || sys.Gid != 1000 {
				t.Errorf("%s owned by %d:%d, want 1000:1000", p, sys.Uid, sys.Gid)
			}
		}
	}
	// The container sees the upload.
	if res := run(t, m, id, "r1", "query", "cat /home/work/dir/sub/hello.txt"); !strings.Contains(consoleText(res), "hello") {
		t.Errorf("container reads %q", consoleText(res))
	}

	// download_file: a tar of the directory.
	tarball, err := m.DownloadFile(id, "/home/work/dir")
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		members[hdr.Name] = string(b)
	}
	if len(members) != 3 || members["dir/sub/hello.txt"] != "hello" {
		t.Errorf("tar members %q", members)
	}
	if b, err := m.DownloadSingle(id, "dir/sub/hello.txt"); err != nil || string(b) != "hello" {
		t.Errorf("download_single: %q, %v", b, err)
	}

	// Size limits.
	if err := m.UploadFile(id, "big.bin", make([]byte, kernel.MaxDownloadSize+1)); err != nil {
		t.Fatal(err)
	}
	if err := m.UploadFile(id, "fits.bin", make([]byte, kernel.MaxDownloadSize)); err != nil {
		t.Fatal(err)
	}
	failures := []struct {
		description string
		do          func() error
		wantErr     error
		wantText    string
	}{
		{"download_file too large", func() error { _, err := m.DownloadFile(id, "big.bin"); return err }, kernel.ErrTooLarge, "1 MiB"},
		{"download_file exact limit plus tar headers", func() error { _, err := m.DownloadFile(id, "fits.bin"); return err }, kernel.ErrTooLarge, "fits.bin"},
		{"download_single too large", func() error { _, err := m.DownloadSingle(id, "big.bin"); return err }, kernel.ErrTooLarge, "big.bin"},
		{"download_single a directory", func() error { _, err := m.DownloadSingle(id, "dir"); return err }, kernel.ErrNotSingleFile, "dir"},
		{"download_file outside", func() error { _, err := m.DownloadFile(id, "/etc/passwd"); return err }, kernel.ErrOutsideWork, "/etc/passwd"},
		{"download_single via symlink", func() error { _, err := m.DownloadSingle(id, "etc/passwd"); return err }, kernel.ErrOutsideWork, "etc/passwd"},
		{"list_files outside", func() error { _, err := m.ListFiles(id, "../"); return err }, kernel.ErrOutsideWork, "../"},
		{"unknown kernel", func() error { _, err := m.ListFiles(e.kid("k-none"), "."); return err }, kernel.ErrKernelNotFound, e.kid("k-none")},
	}
	for _, tc := range failures {
		if err := tc.do(); !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%s: got %v, want %v naming %q", tc.description, err, tc.wantErr, tc.wantText)
		}
	}
	if b, err := m.DownloadSingle(id, "fits.bin"); err != nil || len(b) != kernel.MaxDownloadSize {
		t.Errorf("download_single at the limit: %d bytes, %v", len(b), err)
	}

	// list_files.
	listing, err := m.ListFiles(id, "/home/work")
	if err != nil || listing.Errors != "" || listing.Abspath != "/home/work" {
		t.Fatalf("list_files: %+v, %v", listing, err)
	}
	var files []map[string]any
	if err := json.Unmarshal([]byte(listing.Files), &files); err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, f := range files {
		byName[f["filename"].(string)] = f
	}
	if f := byName["top.txt"]; f == nil || f["mode"] != "-rw-r--r--" || f["size"] != 4.0 || f["mtime"].(float64) <= 0 {
		t.Errorf("top.txt entry %v", f)
	}
	if f := byName["dir"]; f == nil || f["mode"] != "drwxr-xr-x" {
		t.Errorf("dir entry %v", f)
	}
	if f := byName["etc"]; f == nil || !strings.HasPrefix(f["mode"].(string), "l") {
		t.Errorf("symlink entry %v", f)
	}
	if missing, err := m.ListFiles(id, "nope"); err != nil || missing.Errors == "" || missing.Files != "" {
		t.Errorf("list_files of a missing dir: %+v, %v", missing, err)
	}
}

func consoleText(res runnerclient.Result) string {
	var b strings.Builder
	for _, c := range res.Console {
		b.WriteString(c.Data)
	}
	return b.String()
}
