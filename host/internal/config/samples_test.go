package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// repoConfigs is /work/main/configs seen from this package.
func repoConfigs(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "configs"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestProductionSampleLoads(t *testing.T) {
	path := filepath.Join(repoConfigs(t), "agent.toml")
	cfg, warnings, err := Load(path, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("the sample should use only honoured keys, got warnings %v", warnings)
	}
	cases := []struct {
		description string
		got, want   any
	}{
		{"backend", cfg.Agent.Backend, BackendDocker},
		{"external etcd", cfg.Etcd.Embedded, false},
		{"plugin dirs", cfg.Agent.PluginDirs, []string{DefaultPluginDir}},
		{"allow list not set", cfg.Agent.AllowComputePlugins, []string(nil)},
		{"watcher targets our unit", cfg.Watcher.TargetService, "baiagent.service"},
		{"watcher publishes its port", cfg.Watcher.ServiceAddrConfigured, true},
		{"json logs", cfg.Logging.Format, LogFormatJSON},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestDevSampleLoads(t *testing.T) {
	configs := repoConfigs(t)
	repo := filepath.Dir(configs)
	cfg, warnings, err := Load(filepath.Join(configs, "agent.dev.toml"), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	cases := []struct {
		description string
		got, want   any
	}{
		{"embedded etcd", cfg.Etcd.Embedded, true},
		{"etcd data under the repo's var", cfg.Etcd.DataDir, filepath.Join(repo, "var", "etcd")},
		{"plugins from the repo's bin", cfg.Agent.PluginDirs, []string{filepath.Join(repo, "bin", "plugins")}},
		{"cpu and cuda allowed", cfg.Agent.AllowComputePlugins, []string{"cpu", "cuda"}},
		{"fake GPUs from a fixture in the repo", fileExists(filepath.Join(configs, fmt.Sprint(cfg.Plugins["cuda"]["fake-devices"]))), true},
		{"fixture is relative to the config dir", cfg.Dir(), configs},
		{"loopback RPC", cfg.Agent.RPCListenAddr, HostPort{"127.0.0.1", 6001}},
		{"no manager needed", cfg.Agent.SkipManagerDetection, true},
		{"scratch under the repo's var", cfg.Container.ScratchRoot, filepath.Join(repo, "var", "scratches")},
		{"log level", cfg.Logging.Level, LogInfo},
		{"log format", cfg.Logging.Format, LogFormatConsole},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.description, tc.got, tc.want)
		}
	}
}

func TestSystemdUnits(t *testing.T) {
	cases := []struct {
		description string
		file        string
		wantLines   []string
	}{
		{"agent", "baiagent.service", []string{
			"ExecStart=/usr/local/bin/baiagent server -f /etc/backend.ai/agent.toml",
			"KillMode=process", "After=network-online.target docker.service", "Restart=on-failure",
		}},
		{"watcher", "baiagent-watcher.service", []string{
			"ExecStart=/usr/local/bin/baiagent watcher -f /etc/backend.ai/agent.toml",
			"KillMode=process", "Restart=always",
		}},
	}
	for _, tc := range cases {
		data, err := os.ReadFile(filepath.Join(repoConfigs(t), "systemd", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for _, want := range append(tc.wantLines, "LimitNOFILE=") {
			found := false
			for _, line := range lines {
				if strings.HasPrefix(strings.TrimSpace(line), want) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s lacks a line starting with %q", tc.description, tc.file, want)
			}
		}
	}
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
