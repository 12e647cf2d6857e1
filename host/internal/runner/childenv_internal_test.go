package runner

import (
	"slices"
	"testing"
)

// The child environment follows upstream's BaseRunner.__init__
// (kernel/base.py, 26.8.1: default_child_env, promote_path).
func TestChildEnv(t *testing.T) {
	cases := []struct {
		description string
		base        []string
		dirs        []string // paths that exist as directories
		files       []string // paths that exist as files
		want        []string // entries that must be present
		absent      []string // entries that must not be present
	}{
		{
			description: "defaults over an empty environment",
			want: []string{"LANG=C.UTF-8", "HOME=/home/work", "TERM=xterm", "SHELL=/bin/bash",
				"PATH=/home/work/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		{
			description: "LANG, HOME and TERM override the image's; SHELL is kept",
			base:        []string{"LANG=en_US.UTF-8", "HOME=/root", "TERM=dumb", "SHELL=/bin/zsh", "PATH=/bin"},
			want:        []string{"LANG=C.UTF-8", "HOME=/home/work", "TERM=xterm", "SHELL=/bin/zsh", "PATH=/home/work/.local/bin:/bin"},
			absent:      []string{"LANG=en_US.UTF-8", "HOME=/root", "TERM=dumb"},
		},
		{
			description: "cuda promoted when present, .local/bin first, no duplicates",
			base:        []string{"PATH=/usr/bin:/usr/local/cuda/bin:/home/work/.local/bin"},
			dirs:        []string{"/usr/local/cuda/bin"},
			want:        []string{"PATH=/home/work/.local/bin:/usr/local/cuda/bin:/usr/bin"},
		},
		{
			description: "alpine's ash as SHELL",
			files:       []string{"/bin/ash"},
			want:        []string{"SHELL=/bin/ash"},
		},
		{
			description: "/opt/backend.ai/lib dropped from LD_LIBRARY_PATH",
			base:        []string{"LD_LIBRARY_PATH=/opt/backend.ai/lib:/usr/local/nvidia/lib64"},
			want:        []string{"LD_LIBRARY_PATH=/usr/local/nvidia/lib64"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			stat := func(p string) (bool, bool) {
				if slices.Contains(tc.dirs, p) {
					return true, true
				}
				return slices.Contains(tc.files, p), false
			}
			got := childEnv(tc.base, stat)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("missing %q in %q", w, got)
				}
			}
			for _, a := range tc.absent {
				if slices.Contains(got, a) {
					t.Errorf("%q still in %q", a, got)
				}
			}
		})
	}
}
