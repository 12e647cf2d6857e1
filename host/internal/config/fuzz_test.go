package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to the loader: it must never panic, and
// whatever it accepts must print and reload to the same config.
//
//	go test -run '^$' -fuzz FuzzParse ./internal/config/
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalTOML))
	f.Add([]byte(richTOML))
	f.Add([]byte(withSection("etcd", "embedded = true")))
	f.Add([]byte(withSection("resource", `reserved-mem = "1.5g"`)))
	f.Add([]byte("[etcd\n"))
	for _, name := range []string{"agent.toml", "agent.dev.toml"} {
		if data, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", name)); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const source = "/etc/backend.ai/agent.toml"
		cfg, _, err := Parse(data, source, testEnv(nil))
		if err != nil {
			return
		}
		printed, err := cfg.EffectiveTOMLWithSecrets()
		if err != nil {
			t.Fatalf("accepted config cannot be printed: %v", err)
		}
		again, _, err := Parse(printed, source, testEnv(nil))
		if err != nil {
			t.Fatalf("printed config does not reload: %v\n%s", err, printed)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("printed config reloads differently\n before: %+v\n  after: %+v\n%s", cfg, again, printed)
		}
	})
}

// FuzzLoad drives the whole loader as the CLI does: a file on disk read by
// Load, with one BACKEND_* override set to a fuzzed value. It must never
// panic, must answer quickly, and must refuse with a message.
//
//	go test -run '^$' -fuzz FuzzLoad ./internal/config/
func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimalTOML), uint8(0), "")
	f.Add([]byte("\xEF\xBB\xBF"+richTOML), uint8(3), "10.0.0.1:2379,10.0.0.2:2379")
	f.Add([]byte(withSection("agent", `scaling-group = "default"`)), uint8(9), "jail")
	f.Add([]byte(withSection("resource", "allocation-mode = \"manual\"\n[resource.allocations]\ncpu = 1\nmem = \"1G\"")), uint8(1), "4")
	f.Add([]byte("[etcd\n"), uint8(2), "x")
	names := []string{}
	for _, o := range EnvOverrides() {
		names = append(names, o.Env)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, which uint8, value string) {
		path := filepath.Join(dir, "agent.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{names[int(which)%len(names)]: value}
		start := time.Now()
		cfg, _, err := Load(path, testEnv(vars))
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("Load took %v", elapsed)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if _, err := cfg.EffectiveTOML(); err != nil {
			t.Fatalf("accepted config cannot be printed: %v", err)
		}
	})
}
