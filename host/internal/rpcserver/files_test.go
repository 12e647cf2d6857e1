package rpcserver

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

func fakePath(p string) (string, error) {
	if p == kernel.ContainerWorkDir {
		return "", nil
	}
	p = strings.TrimPrefix(p, kernel.ContainerWorkDir+"/")
	if strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
		return "", fmt.Errorf("%w: %s", kernel.ErrOutsideWork, p)
	}
	return p, nil
}

func (f *fakeKernels) UploadFile(kid, name string, data []byte) error {
	if _, err := f.get(kid); err != nil {
		return err
	}
	p, err := fakePath(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.files[kid+"\x00"+p] = append([]byte(nil), data...)
	f.mu.Unlock()
	return nil
}

func (f *fakeKernels) DownloadSingle(kid, name string) ([]byte, error) {
	if _, err := f.get(kid); err != nil {
		return nil, err
	}
	p, err := fakePath(name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	data, ok := f.files[kid+"\x00"+p]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("could not download %s: no such file", name)
	}
	if len(data) > kernel.MaxDownloadSize {
		return nil, fmt.Errorf("%w: %s exceeds 1 MiB", kernel.ErrTooLarge, name)
	}
	return data, nil
}

func (f *fakeKernels) DownloadFile(kid, name string) ([]byte, error) {
	data, err := f.DownloadSingle(kid, name)
	if err != nil {
		return nil, err
	}
	return append([]byte("TAR:"), data...), nil
}

func (f *fakeKernels) ListFiles(kid, name string) (kernel.FileListing, error) {
	if _, err := f.get(kid); err != nil {
		return kernel.FileListing{}, err
	}
	if _, err := fakePath(name); err != nil {
		return kernel.FileListing{}, err
	}
	return kernel.FileListing{Files: `[{"filename": "a"}]`, Abspath: name}, nil
}

func TestFileMethodsWithFakeService(t *testing.T) {
	fake := newFakeKernels()
	_, c := kernelServer(t, fake, nil, nil)
	ctx := ctxTimeout(t)
	k1, unknown := randomUUID(), randomUUID()
	fake.kernels[k1] = kernel.Info{KernelID: k1, State: "running"}
	big := make([]byte, kernel.MaxDownloadSize+1)

	cases := []struct {
		description string
		method      string
		args        []any
		want        any
		wantErr     string
		wantText    string
	}{
		{description: "upload", method: "upload_file", args: []any{k1, "dir/a.txt", []byte("hi")}, want: nil},
		{description: "upload big", method: "upload_file", args: []any{k1, "big", big}, want: nil},
		{description: "download_single", method: "download_single", args: []any{k1, "/home/work/dir/a.txt"}, want: []byte("hi")},
		{description: "download_file", method: "download_file", args: []any{k1, "dir/a.txt"}, want: []byte("TAR:hi")},
		{description: "list_files", method: "list_files", args: []any{k1, "/home/work"},
			want: map[string]any{"files": `[{"filename": "a"}]`, "errors": "", "abspath": "/home/work"}},
		{description: "upload escape", method: "upload_file", args: []any{k1, "../x", []byte("x")}, wantErr: "PermissionError", wantText: "../x"},
		{description: "download outside", method: "download_file", args: []any{k1, "/etc/passwd"}, wantErr: "PermissionError", wantText: "/etc/passwd"},
		{description: "list outside", method: "list_files", args: []any{k1, "/etc"}, wantErr: "PermissionError", wantText: "/etc"},
		{description: "download too large", method: "download_single", args: []any{k1, "big"}, wantErr: "ValueError", wantText: "1 MiB"},
		{description: "download missing", method: "download_file", args: []any{k1, "nope"}, wantErr: "RuntimeError", wantText: "nope"},
		{description: "unknown kernel", method: "download_single", args: []any{unknown, "a"}, wantErr: "KernelNotFoundError", wantText: unknown},
		{description: "filedata not bytes", method: "upload_file", args: []any{k1, "a", "text"}, wantErr: "TypeError", wantText: "'filedata'"},
		{description: "filename not str", method: "upload_file", args: []any{k1, 5, []byte("x")}, wantErr: "TypeError", wantText: "'filename'"},
		{description: "filepath missing", method: "download_file", args: []any{k1}, wantErr: "TypeError", wantText: "'filepath'"},
		{description: "path not str", method: "list_files", args: []any{k1, nil}, wantErr: "TypeError", wantText: "'path'"},
		{description: "kernel_id wrong type", method: "list_files", args: []any{5, "."}, wantErr: "TypeError", wantText: "'kernel_id'"},
	}
	for _, tc := range cases {
		got, err := invokeRaw(ctx, c, tc.method, tc.args, nil)
		if tc.wantErr != "" {
			wantFailure(t, tc.description, got, err, tc.wantErr, tc.wantText)
			continue
		}
		if err != nil || !equalWire(got, tc.want) {
			t.Errorf("%s: got %#v, %v; want %#v", tc.description, got, err, tc.want)
		}
	}
}

// equalWire compares a decoded answer with a plain Go value.
func equalWire(got, want any) bool {
	if m, ok := want.(map[string]any); ok {
		gm, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprint(got) == fmt.Sprint(m)
		}
		return reflect.DeepEqual(gm, m)
	}
	return reflect.DeepEqual(got, want)
}
