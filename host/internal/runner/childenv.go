package runner

import (
	"os"
	"slices"
	"strings"
)

// defaultChildPath is upstream's default_child_env_path, used when the
// image sets no PATH.
const defaultChildPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// childEnv is the environment of every process the runner starts, as
// upstream's BaseRunner.child_env (kernel/base.py): the container's, with
// LANG=C.UTF-8, HOME=/home/work and TERM=xterm over it; PATH and SHELL
// defaulted when missing; /usr/local/cuda/bin, /usr/local/nvidia/bin and
// linuxbrew promoted where they exist, and /home/work/.local/bin always
// first. /opt/backend.ai/lib (upstream's krunner libraries, which upstream
// strips for apps) is dropped from LD_LIBRARY_PATH for every child: ours
// has no krunner libraries to need it. stat says whether a path exists and
// is a directory.
func childEnv(base []string, stat func(string) (exists, isDir bool)) []string {
	isDir := func(p string) bool { _, d := stat(p); return d }
	env := slices.Clone(base)
	set := func(k, v string) {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
		env = append(env, k+"="+v)
	}
	get := func(k string) (string, bool) {
		v, ok := "", false
		for _, kv := range env {
			if val, found := strings.CutPrefix(kv, k+"="); found {
				v, ok = val, true
			}
		}
		return v, ok
	}
	set("LANG", "C.UTF-8")
	set("HOME", "/home/work")
	set("TERM", "xterm")
	if _, ok := get("SHELL"); !ok {
		shell := "/bin/bash"
		if ok, dir := stat("/bin/ash"); ok && !dir {
			shell = "/bin/ash"
		}
		set("SHELL", shell)
	}
	if v, ok := get("LD_LIBRARY_PATH"); ok {
		parts := slices.DeleteFunc(strings.Split(v, ":"), func(p string) bool { return p == "/opt/backend.ai/lib" })
		set("LD_LIBRARY_PATH", strings.Join(parts, ":"))
	}
	path, ok := get("PATH")
	if !ok {
		path = defaultChildPath
	}
	for _, p := range []struct {
		dir, promote string
	}{
		{"/usr/local/cuda/bin", "/usr/local/cuda/bin"},
		{"/usr/local/nvidia/bin", "/usr/local/nvidia/bin"},
		{"/home/linuxbrew/.linuxbrew", "/home/linuxbrew/.linuxbrew/bin"},
		{"", "/home/work/.local/bin"},
	} {
		if p.dir == "" || isDir(p.dir) {
			path = promotePath(path, p.promote)
		}
	}
	set("PATH", path)
	return env
}

// promotePath puts dir first in a PATH value, once (upstream's promote_path).
func promotePath(path, dir string) string {
	parts := slices.DeleteFunc(strings.Split(path, ":"), func(p string) bool { return p == dir })
	return strings.Join(append([]string{dir}, parts...), ":")
}

func osStat(p string) (exists, isDir bool) {
	st, err := os.Stat(p)
	return err == nil, err == nil && st.IsDir()
}
