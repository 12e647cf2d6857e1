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
	// Only the note that its relative paths are the file's, on purpose:
	// the README's first command shows no warning.
	if got := withoutNotes(warnings); len(got) != 0 {
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

// TestUpstreamFilesLoad feeds upstream's own agent.toml files (fixtures
// under testdata/upstream, origin noted in each: configs/agent/halfstack.toml
// and halfstack-sftp.toml of 26.8.1, the install guide's example of 26.7.0)
// to the loader, run from the file's directory as upstream's guides do.
// A default or disabled value earns no warning; only settings that are on
// and not honoured do, and the old scaling-group name.
func TestUpstreamFilesLoad(t *testing.T) {
	cases := []struct {
		file         string
		wantWarnings []string
		check        func(*Config) (got, want any)
	}{
		{"halfstack.toml", nil, func(c *Config) (any, any) {
			return []any{c.Agent.InitialResourceGroupName, c.Container.ScratchSize, c.Etcd.Addrs[0].Port},
				[]any{"default", ByteSize(1 << 30), 8120}
		}},
		{"halfstack-sftp.toml", []string{
			"agent.metadata-server-port: honoured by backend.ai-agent but ignored by baiagent",
			"otel: honoured by backend.ai-agent but ignored by baiagent",
			"pyroscope: honoured by backend.ai-agent but ignored by baiagent",
		}, func(c *Config) (any, any) {
			return []any{c.Agent.ID, c.Agent.InitialResourceGroupName, c.Agent.AllowComputePlugins},
				[]any{"i-local-sftp", "upload", []string{}}
		}},
		{"install-guide-26.7.0.toml", []string{
			"agent.scaling-group: deprecated name of initial-resource-group-name (backend.ai-agent 26.8 refuses it); rename the key",
			"logging.drivers: the file driver is not honoured by baiagent, which logs to stderr only",
			"logging.file: honoured by backend.ai-agent but ignored by baiagent",
		}, func(c *Config) (any, any) {
			return []any{c.Agent.InitialResourceGroupName, c.Container.KernelUID, c.Agent.PIDFile},
				[]any{"default", 1100, "/home/bai/agent/agent.pid"}
		}},
	}
	for _, tc := range cases {
		dir, err := filepath.Abs(filepath.Join("testdata", "upstream"))
		if err != nil {
			t.Fatal(err)
		}
		env := testEnv(nil)
		env.WorkDir = dir
		cfg, warnings, err := Load(filepath.Join(dir, tc.file), env)
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		var got []string
		for _, w := range warnings {
			got = append(got, w.String())
		}
		if !reflect.DeepEqual(got, tc.wantWarnings) {
			t.Errorf("%s: warnings\n%s\nwant\n%s", tc.file, strings.Join(got, "\n"), strings.Join(tc.wantWarnings, "\n"))
		}
		if gotValues, want := tc.check(cfg); !reflect.DeepEqual(gotValues, want) {
			t.Errorf("%s: got %#v, want %#v", tc.file, gotValues, want)
		}
	}
}
