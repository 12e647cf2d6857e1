package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// minimalTOML has only what upstream requires.
const minimalTOML = `
[etcd]
[agent]
backend = "docker"
[container]
[resource]
`

// richTOML sets nearly every key, in the various spellings upstream accepts.
const richTOML = `
[etcd]
namespace = "prod"
addr = ["10.0.0.1:2379", { host = "10.0.0.2", port = 2380 }]
user = "agent"
password = "pw"

[agent]
mode = "docker"                       # upstream's alias of backend
rpc-listen-addr = { host = "[::1]", port = 7001 }
advertised-rpc-addr = ["203.0.113.9", 16001]
service-addr = "0.0.0.0:16003"        # upstream's alias of internal-addr
rpc_auth_manager_public_key = "keys/manager.key"   # snake_case is accepted too
id = "i-pinned"
scaling-group-type = "STORAGE"
allow-compute-plugins = ["cuda", "ai.backend.accelerator.rocm"]
block-compute-plugins = []
kernel-creation-concurrency = "8"
plugin-dirs = ["plugins", "/opt/plugins"]
plugin-checksums = { cuda = "SHA256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789", rocm = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" }
plugin-start-timeout = 45
plugin-runtime-dir = "/run/p"
[agent.sync-container-lifecycles]
enabled = false
interval = 2.5

[container]
kernel-host = "10.1.1.1"              # upstream's alias of bind-host
kernel-uid = "work"
kernel-gid = "2002"
port-range = [40000, "40100"]
scratch-size = "10g"
krunner-volumes = { "/opt/krunner" = "/opt/backend.ai/krunner" }

[resource]
reserved-mem = "512m"
allocation-mode = "manual"
affinity-policy = "prefer-single-node"
allocation-order = []
[resource.allocations]
cpu = 8
mem = "64G"
devices = { "cuda.device" = "1.5", "cuda.shares" = 0.25 }

[api]
pull-timeout = 600.5
push-timeout = 1800

[logging]
level = "DEBUG"
format = "json"

[redis]
addr = "127.0.0.1:6379"
password = "r"
db = 3

[watcher]
service-addr = "0.0.0.0:16009"
ssl-privkey = "watcher.key"

[plugins.cuda]
fake-devices = "fixtures/cuda-2xA100.json"
count = 2
`

// testEnv is a hermetic environment: nothing comes from the real process.
func testEnv(vars map[string]string) Env {
	users := map[string]int{"work": 1001}
	groups := map[string]int{"work": 2001}
	return Env{
		Lookup: func(name string) (string, bool) {
			v, ok := vars[name]
			return v, ok
		},
		WorkDir:         "/srv/cwd",
		HomeDir:         "/home/tester",
		SystemConfigDir: "/nonexistent/etc/backend.ai",
		Hostname:        "node1",
		UID:             1000,
		Arch:            "amd64",
		LookupUserID: func(name string) (int, error) {
			if id, ok := users[name]; ok {
				return id, nil
			}
			return 0, fmt.Errorf("unknown user %q", name)
		},
		LookupGroupID: func(name string) (int, error) {
			if id, ok := groups[name]; ok {
				return id, nil
			}
			return 0, fmt.Errorf("unknown group %q", name)
		},
	}
}

// mustParse parses a config that must be valid.
func mustParse(t *testing.T, text string, env Env) (*Config, []Warning) {
	t.Helper()
	cfg, warnings, err := Parse([]byte(text), "/etc/backend.ai/agent.toml", env)
	if err != nil {
		t.Fatalf("Parse: %v\n--- input ---\n%s", err, text)
	}
	return cfg, warnings
}

// problemsOf parses a config that must be invalid and returns its problems.
func problemsOf(t *testing.T, text string, env Env) []*Problem {
	t.Helper()
	_, _, err := Parse([]byte(text), "/etc/backend.ai/agent.toml", env)
	if err == nil {
		t.Fatalf("Parse succeeded, want a validation error\n--- input ---\n%s", text)
	}
	var validationErr *ValidationError
	if !errors.As(err, &validationErr) {
		t.Fatalf("Parse error is %T (%v), want *ValidationError", err, err)
	}
	return validationErr.Problems
}

// withSection inserts extra lines right after the [section] header of
// minimalTOML; lines that set agent.backend replace minimalTOML's.
func withSection(section, lines string) string {
	if section == "agent" && strings.HasPrefix(lines, "backend =") {
		return strings.Replace(minimalTOML, `backend = "docker"`, lines, 1)
	}
	header := "[" + section + "]\n"
	if !strings.Contains(minimalTOML, header) {
		return minimalTOML + header + lines + "\n"
	}
	return strings.Replace(minimalTOML, header, header+lines+"\n", 1)
}

// withoutNotes drops WarnNote warnings (where relative paths resolve).
func withoutNotes(warnings []Warning) []Warning {
	var out []Warning
	for _, w := range warnings {
		if w.Kind != WarnNote {
			out = append(out, w)
		}
	}
	return out
}
