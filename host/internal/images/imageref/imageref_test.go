package imageref

import (
	"strings"
	"testing"
)

// TestParse pins upstream's ImageRef.from_image_str (src/ai/backend/common/docker.py).
func TestParse(t *testing.T) {
	cases := []struct {
		description string
		canonical   string
		project     string
		registry    string
		want        Ref
		wantErr     bool
	}{
		{"registry, project, name and tag", "cr.backend.ai/stable/python:3.11", "stable", "cr.backend.ai",
			Ref{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai"}, false},
		{"nested name under the project", "cr.backend.ai/stable/ngc/pytorch:24.01-py3", "stable", "cr.backend.ai",
			Ref{Name: "ngc/pytorch", Project: "stable", Tag: "24.01-py3", Registry: "cr.backend.ai"}, false},
		{"an IP registry with a port is the registry whatever its name", "127.0.0.1:5000/test/busybox:1", "test", "local",
			Ref{Name: "busybox", Project: "test", Tag: "1", Registry: "127.0.0.1:5000"}, false},
		{"no tag means latest", "cr.backend.ai/stable/python", "stable", "cr.backend.ai",
			Ref{Name: "python", Project: "stable", Tag: "latest", Registry: "cr.backend.ai"}, false},
		{"a name without the registry takes the named one", "stable/python:3.11", "stable", "cr.backend.ai",
			Ref{Name: "python", Project: "stable", Tag: "3.11", Registry: "cr.backend.ai"}, false},
		{"no registry at all is Docker Hub", "python:3.11", "", "",
			Ref{Name: "python", Tag: "3.11", Registry: "index.docker.io"}, false},
		{"the project is the whole name", "cr.backend.ai/solo:1", "solo", "cr.backend.ai",
			Ref{Name: "", Project: "solo", Tag: "1", Registry: "cr.backend.ai"}, false},
		{"a project the name is not in", "cr.backend.ai/stable/python:3.11", "other", "cr.backend.ai", Ref{}, true},
		{"a URL", "https://cr.backend.ai/stable/python:3.11", "stable", "cr.backend.ai", Ref{}, true},
		{"a digest reference", "cr.backend.ai/stable/python@sha256:abcd", "stable", "cr.backend.ai", Ref{}, true},
		{"an empty tag", "cr.backend.ai/stable/python:", "stable", "cr.backend.ai", Ref{}, true},
	}
	for _, tc := range cases {
		got, err := Parse(tc.canonical, tc.project, tc.registry)
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v (error %v)", tc.description, got, err, tc.want, tc.wantErr)
		}
	}
}

// FuzzParse feeds Parse the strings a manager sends: it must not panic,
// and what it accepts must rebuild the canonical name.
func FuzzParse(f *testing.F) {
	f.Add("cr.backend.ai/stable/python:3.11", "stable", "cr.backend.ai")
	f.Add("127.0.0.1:5000/test/busybox:1", "test", "x")
	f.Add("[::1]:5000/a/b:c", "", "")
	f.Add("python", "", "")
	f.Add("a/b/c:d:e", "b", "a")
	f.Fuzz(func(t *testing.T, canonical, project, registry string) {
		ref, err := Parse(canonical, project, registry)
		if err != nil {
			return
		}
		if ref.Tag == "" || strings.Contains(ref.Tag, "/") || ref.Project != project {
			t.Fatalf("%q, %q, %q parsed as %+v", canonical, project, registry, ref)
		}
		var parts []string
		for _, p := range []string{ref.Project, ref.Name} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		rest := strings.Join(parts, "/")
		// The name with its tag (or the implied latest) ends the canonical name.
		if !strings.HasSuffix(canonical, rest+":"+ref.Tag) && !(ref.Tag == "latest" && strings.HasSuffix(canonical, rest)) {
			t.Fatalf("%q, %q, %q parsed as %+v, which does not rebuild it", canonical, project, registry, ref)
		}
	})
}
