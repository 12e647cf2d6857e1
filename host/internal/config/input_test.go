package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// manyKeysTOML is a valid file of distinct keys of about size bytes.
func manyKeysTOML(size int) string {
	var b strings.Builder
	b.WriteString(minimalTOML + "[plugins.many]\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "key%07d = %d\n", i, i)
	}
	return b.String()
}

// TestBadInputIsRefusedQuickly: nothing a path or bytes can hold makes the
// loader hang or read without end; each refusal says what was wrong.
func TestBadInputIsRefusedQuickly(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		description string
		path        string
		wantInError string
	}{
		{"an endless device", "/dev/zero", "not a regular file"},
		{"a directory", dir, "not a regular file"},
		{"1 MiB of distinct keys, just under the size cap", write("keys.toml", manyKeysTOML(MaxFileSize-64)), "more than the 2048"},
		{"over the size cap", write("big.toml", minimalTOML+"# "+strings.Repeat("x", MaxFileSize)+"\n"), "more than the 1048576"},
		{"4097 tables", write("tables.toml", minimalTOML+strings.Repeat("[plugins.x]\n", MaxKeys)), "more than the 2048"},
	}
	for _, tc := range cases {
		start := time.Now()
		_, _, err := Load(tc.path, testEnv(nil))
		elapsed := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), tc.wantInError) {
			t.Errorf("%s: err = %v, want one containing %q", tc.description, err, tc.wantInError)
		}
		if elapsed > time.Second {
			t.Errorf("%s: took %v, want under a second", tc.description, elapsed)
		}
	}
}

// TestLargestAcceptedInputParsesQuickly: a file just within MaxKeys is parsed,
// not refused, and quickly (10 ms alone; the bound allows for -race on a
// loaded machine).
func TestLargestAcceptedInputParsesQuickly(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimalTOML + "[plugins.many]\n")
	for i := 0; i < MaxKeys-20; i++ {
		fmt.Fprintf(&b, "key%d = %d\n", i, i)
	}
	start := time.Now()
	cfg, _ := mustParse(t, b.String(), testEnv(nil))
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if got := len(cfg.Plugins["many"]); got != MaxKeys-20 {
		t.Errorf("got %d keys", got)
	}
}

func TestByteOrderMarkIsStripped(t *testing.T) {
	cfg, _ := mustParse(t, "\xEF\xBB\xBF"+withSection("etcd", `namespace = "bom"`), testEnv(nil))
	if cfg.Etcd.Namespace != "bom" {
		t.Errorf("namespace = %q", cfg.Etcd.Namespace)
	}
}
