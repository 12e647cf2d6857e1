package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
