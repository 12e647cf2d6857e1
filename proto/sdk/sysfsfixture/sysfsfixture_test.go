package sysfsfixture

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		description string
		in          string
		want        []Entry
		wantErr     string
	}{
		{"empty archive", "", nil, ""},
		{"comment only", "a comment\n-- not a marker\n", nil, ""},
		{"one file", "comment\n-- a/b --\nx\ny\n", []Entry{{Path: "a/b", Data: []byte("x\ny\n")}}, ""},
		{"file without trailing newline", "-- f --\nx", []Entry{{Path: "f", Data: []byte("x")}}, ""},
		{"empty file", "-- f --\n-- g --\nz\n", []Entry{{Path: "f"}, {Path: "g", Data: []byte("z\n")}}, ""},
		{"symlink", "-- sys/l -> ../x:1 --\n\n", []Entry{{Path: "sys/l", Link: "../x:1"}}, ""},
		{"name with colons", "-- sys/0000:c6:00.0/vendor --\n0x1002\n", []Entry{{Path: "sys/0000:c6:00.0/vendor", Data: []byte("0x1002\n")}}, ""},
		{"link with content", "-- l -> t --\nx\n", nil, "line 2: link l has content"},
		{"absolute path", "-- /etc/passwd --\n", nil, `line 1: bad path "/etc/passwd"`},
		{"parent path", "c\n-- ../x --\n", nil, `line 2: bad path "../x"`},
		{"unclean path", "-- a//b --\n", nil, `line 1: bad path "a//b"`},
		{"dot path", "-- ./a --\n", nil, `line 1: bad path "./a"`},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "a.txtar")
	if err := os.WriteFile(archive, []byte("-- sys/d/f --\nhello\n-- sys/l -> d/f --\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := ExtractTemp(t, archive)
	tests := []struct {
		description string
		path        string
	}{
		{"regular file", "sys/d/f"},
		{"through the symlink", "sys/l"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, tc.path))
			if err != nil || string(data) != "hello\n" {
				t.Fatalf("read %s: %q, %v", tc.path, data, err)
			}
		})
	}
	if target, err := os.Readlink(filepath.Join(dir, "sys/l")); err != nil || target != "d/f" {
		t.Fatalf("link: %q, %v", target, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txtar")
	if err := os.WriteFile(bad, []byte("-- ../x --\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Extract(bad, t.TempDir()); err == nil || !strings.Contains(err.Error(), "bad.txtar: line 1") {
		t.Fatalf("bad archive: %v", err)
	}
}

// FuzzFixtureArchive feeds the archive reader, which tests and the
// fixture tool use on files from disk.
func FuzzFixtureArchive(f *testing.F) {
	f.Add([]byte("comment\n-- sys/bus/pci/devices/0000:c6:00.0/vendor --\n0x1002\n-- sys/class/drm/card0 -> ../../devices/pci0000:00/0000:c6:00.0/drm/card0 --\n"))
	f.Add([]byte("-- a -> b --\n-- c --\nx\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Path == "" || filepath.IsAbs(e.Path) || e.Path != filepath.Clean(e.Path) {
				t.Fatalf("bad path %q accepted", e.Path)
			}
		}
	})
}
