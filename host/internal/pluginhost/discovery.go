package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ExecutablePrefix is how plugin executables in a plugin dir are named:
// baiagent-plugin-<name>.
const ExecutablePrefix = "baiagent-plugin-"

// Candidate is a plugin executable found in a plugin dir.
type Candidate struct {
	Name string
	Path string
}

// Discover lists plugin executables in dirs. A name found in an earlier dir
// wins over the same name in a later one, so an operator can override a
// packaged plugin. Missing dirs are skipped; other read errors are returned.
func Discover(dirs []string) ([]Candidate, error) {
	seen := map[string]bool{}
	var out []Candidate
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read plugin dir %s: %w", dir, err)
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), ExecutablePrefix)
			if !ok || name == "" || strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
				continue
			}
			if e.IsDir() || seen[name] {
				continue
			}
			seen[name] = true
			out = append(out, Candidate{Name: name, Path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ErrUnsafeExecutable marks a plugin file the agent refuses to run.
var ErrUnsafeExecutable = errors.New("unsafe plugin executable")

// checkExecutable refuses files anyone could have replaced (world-writable
// file or dir) and files that are not executable regular files.
func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat plugin %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrUnsafeExecutable, path)
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%w: %s is world-writable (mode %04o)", ErrUnsafeExecutable, path, st.Mode().Perm())
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s is not executable (mode %04o)", ErrUnsafeExecutable, path, st.Mode().Perm())
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("stat plugin dir of %s: %w", path, err)
	}
	if dir.Mode().Perm()&0o002 != 0 && dir.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%w: its dir %s is world-writable (mode %04o)", ErrUnsafeExecutable, filepath.Dir(path), dir.Mode().Perm())
	}
	return nil
}

// parseChecksum reads "sha256:<hex>" (or bare hex) into bytes.
func parseChecksum(s string) ([]byte, error) {
	hexPart := strings.TrimPrefix(s, "sha256:")
	if strings.Contains(hexPart, ":") {
		return nil, fmt.Errorf("unsupported checksum %q: only sha256 is supported", s)
	}
	sum, err := hex.DecodeString(hexPart)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("invalid sha256 checksum %q", s)
	}
	return sum, nil
}

// FileSHA256 returns "sha256:<hex>" of a file, the form agent.toml takes.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
