package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// searchLayout is a fake filesystem: a home with a source checkout and a
// system config dir, all under one temp dir.
type searchLayout struct {
	home, checkout, cwd, system string
}

func newSearchLayout(t *testing.T) searchLayout {
	root := t.TempDir()
	l := searchLayout{
		home:     filepath.Join(root, "home", "tester"),
		checkout: filepath.Join(root, "home", "tester", "src", "backend.ai"),
		system:   filepath.Join(root, "etc", "backend.ai"),
	}
	l.cwd = filepath.Join(l.checkout, "sub", "dir")
	for _, dir := range []string{l.cwd, l.system, filepath.Join(l.home, ".config", "backend.ai")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(l.checkout, "BUILD_ROOT"), "")
	return l
}

func (l searchLayout) env(vars map[string]string) Env {
	env := testEnv(vars)
	env.WorkDir, env.HomeDir, env.SystemConfigDir = l.cwd, l.home, l.system
	return env
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSearchPathsOrder(t *testing.T) {
	l := newSearchLayout(t)
	got := SearchPaths(l.env(nil))
	want := []string{
		filepath.Join(l.cwd, "agent.toml"),
		filepath.Join(l.checkout, "agent.toml"), // the parent holding BUILD_ROOT
		filepath.Join(l.home, ".config", "backend.ai", "agent.toml"),
		filepath.Join(l.system, "agent.toml"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SearchPaths:\n got %v\nwant %v", got, want)
	}

	outside := l.env(nil)
	outside.WorkDir = filepath.Dir(l.system) // not under home: no parent scan
	if got := SearchPaths(outside); len(got) != 3 || got[0] != filepath.Join(outside.WorkDir, "agent.toml") {
		t.Errorf("cwd outside home: SearchPaths = %v, want cwd, home config, system", got)
	}

	explicit := l.env(map[string]string{"BACKEND_CONFIG_FILE": "/x/custom.toml"})
	if got := SearchPaths(explicit); !reflect.DeepEqual(got, []string{"/x/custom.toml"}) {
		t.Errorf("BACKEND_CONFIG_FILE: SearchPaths = %v, want only that file", got)
	}
}

func TestFindPicksTheFirstExistingFile(t *testing.T) {
	cases := []struct {
		description string
		present     []string // "cwd", "checkout", "home", "system", "cwd-dir"
		vars        map[string]string
		want        string // which one, or "" for ErrNotFound
	}{
		{"only the system file", []string{"system"}, nil, "system"},
		{"home config beats system", []string{"home", "system"}, nil, "home"},
		{"checkout beats home", []string{"checkout", "home", "system"}, nil, "checkout"},
		{"cwd beats everything", []string{"cwd", "checkout", "home", "system"}, nil, "cwd"},
		{"a directory named agent.toml is skipped", []string{"cwd-dir", "system"}, nil, "system"},
		{"nothing found", nil, nil, ""},
		{"BACKEND_CONFIG_FILE wins", []string{"cwd", "explicit"}, map[string]string{"BACKEND_CONFIG_FILE": "explicit"}, "explicit"},
		{"BACKEND_CONFIG_FILE missing is not found, even with others present", []string{"cwd"}, map[string]string{"BACKEND_CONFIG_FILE": "explicit"}, ""},
	}
	for _, tc := range cases {
		l := newSearchLayout(t)
		locations := map[string]string{
			"cwd":      filepath.Join(l.cwd, "agent.toml"),
			"checkout": filepath.Join(l.checkout, "agent.toml"),
			"home":     filepath.Join(l.home, ".config", "backend.ai", "agent.toml"),
			"system":   filepath.Join(l.system, "agent.toml"),
			"explicit": filepath.Join(l.home, "explicit.toml"),
		}
		for _, name := range tc.present {
			if name == "cwd-dir" {
				if err := os.Mkdir(locations["cwd"], 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			writeFile(t, locations[name], minimalTOML)
		}
		vars := map[string]string{}
		for k, v := range tc.vars {
			vars[k] = locations[v]
		}
		got, err := Find(l.env(vars))
		if tc.want == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Find = %q, %v; want ErrNotFound", tc.description, got, err)
			}
			continue
		}
		if err != nil || got != locations[tc.want] {
			t.Errorf("%s: Find = %q, %v; want %q", tc.description, got, err, locations[tc.want])
		}
	}
}

func TestLoadSearchesWhenNoPathIsGiven(t *testing.T) {
	l := newSearchLayout(t)
	writeFile(t, filepath.Join(l.system, "agent.toml"), withSection("agent", `plugin-dirs = ["plugins"]`))
	cfg, _, err := Load("", l.env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SourcePath != filepath.Join(l.system, "agent.toml") {
		t.Errorf("SourcePath = %q", cfg.SourcePath)
	}
	if want := []string{filepath.Join(l.system, "plugins")}; !reflect.DeepEqual(cfg.Agent.PluginDirs, want) {
		t.Errorf("plugin-dirs = %v, want %v (relative to the found file)", cfg.Agent.PluginDirs, want)
	}

	empty := newSearchLayout(t)
	_, _, err = Load("", empty.env(nil))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), empty.system) {
		t.Errorf("Load with nothing to find: %v; want ErrNotFound listing the searched paths", err)
	}
}

func TestLoadResolvesARelativePathAgainstTheWorkDir(t *testing.T) {
	l := newSearchLayout(t)
	writeFile(t, filepath.Join(l.cwd, "custom.toml"), minimalTOML)
	cfg, _, err := Load("custom.toml", l.env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SourcePath != filepath.Join(l.cwd, "custom.toml") {
		t.Errorf("SourcePath = %q", cfg.SourcePath)
	}
	if _, _, err := Load("missing.toml", l.env(nil)); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a missing explicit file: %v; want a read error, not ErrNotFound", err)
	}
}
