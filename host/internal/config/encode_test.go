package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestEffectiveTOMLRoundTrips(t *testing.T) {
	samples := filepath.Join("..", "..", "..", "configs")
	cases := []struct {
		description string
		text        string
		vars        map[string]string
	}{
		{"defaults only", minimalTOML, nil},
		{"nearly every key set", richTOML, nil},
		{"environment overrides", minimalTOML, map[string]string{
			"BACKEND_ETCD_ADDR": "a:1,b:2", "BACKEND_AGENT_HOST_OVERRIDE": "", "BACKEND_WATCHER_SERVICE_PORT": "6010",
		}},
		{"embedded etcd", withSection("etcd", "embedded = true"), nil},
		{"redis sentinel with overrides", withSection("redis", "sentinel = \"s1:26379,s2:26379\"\nservice-name = \"m\"\nsentinel-password = \"sp\"\nuse-tls = true\nrequest-timeout = 750\n[redis.override-configs.statistics]\naddr = \"r2:6380\"\npassword = \"p2\"\ntls-skip-verify = true"), nil},
		{"production sample", readSample(t, filepath.Join(samples, "agent.toml")), nil},
		{"dev sample", readSample(t, filepath.Join(samples, "agent.dev.toml")), nil},
	}
	for _, tc := range cases {
		const source = "/etc/backend.ai/agent.toml"
		cfg, _, err := Parse([]byte(tc.text), source, testEnv(tc.vars))
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		printed, err := cfg.EffectiveTOMLWithSecrets()
		if err != nil {
			t.Errorf("%s: printing: %v", tc.description, err)
			continue
		}
		// Reload without the environment: the printed file must stand alone.
		again, warnings, err := Parse(printed, source, testEnv(nil))
		if err != nil {
			t.Errorf("%s: reloading the printed config: %v\n%s", tc.description, err, printed)
			continue
		}
		for _, w := range warnings {
			if w.Kind == WarnUnknownKey {
				t.Errorf("%s: the printed config has a key the loader does not know: %v", tc.description, w)
			}
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Errorf("%s: reloaded config differs\n before: %+v\n  after: %+v\n%s", tc.description, cfg, again, printed)
		}
		printedAgain, _ := again.EffectiveTOMLWithSecrets()
		if !bytes.Equal(printed, printedAgain) {
			t.Errorf("%s: printing is not stable", tc.description)
		}
	}
}

func readSample(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestEffectiveTOMLMasksSecrets(t *testing.T) {
	cases := []struct {
		description string
		text        string
		secrets     []string
		wantLines   []string
	}{
		{
			"etcd and redis passwords are masked",
			withSection("etcd", `password = "etcd-secret"`) + "[redis]\naddr = \"r:6379\"\npassword = \"redis-secret\"\n",
			[]string{"etcd-secret", "redis-secret"},
			[]string{"password = '" + MaskedSecret + "'"},
		},
		{
			"an empty password is shown empty, not masked",
			minimalTOML,
			nil,
			[]string{"password = ''"},
		},
	}
	for _, tc := range cases {
		cfg, _ := mustParse(t, tc.text, testEnv(map[string]string{}))
		out, err := cfg.EffectiveTOML()
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range tc.secrets {
			if strings.Contains(string(out), secret) {
				t.Errorf("%s: output leaks %q:\n%s", tc.description, secret, out)
			}
			if cfg.Etcd.Password == MaskedSecret || (cfg.Redis != nil && cfg.Redis.Password == MaskedSecret) {
				t.Errorf("%s: masking changed the config itself", tc.description)
			}
		}
		for _, line := range tc.wantLines {
			if !strings.Contains(string(out), line) {
				t.Errorf("%s: output lacks %q:\n%s", tc.description, line, out)
			}
		}
	}
}
