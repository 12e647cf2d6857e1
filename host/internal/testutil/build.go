// Package testutil holds helpers shared by the agent's tests.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildTags are the build tags scripts/build.sh builds every executable
// with: grpcnotrace leaves out golang.org/x/net/trace, whose debug pages
// nobody serves and whose html/template would keep the linker from
// dropping unused methods (issue 20).
const BuildTags = "grpcnotrace"

// BuildBinary compiles a Go main package (an import path or a path relative
// to the calling test's directory) into dir/name, as scripts/build.sh
// builds it, and returns the path.
func BuildBinary(tb testing.TB, pkg, dir, name string) string {
	tb.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-tags", BuildTags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// ShortTempDir returns a temp dir with a short path (unix socket paths are
// limited to about 108 bytes), removed when the test ends.
func ShortTempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "bai")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// CopyExecutable copies src to dir/name with mode 0755 and returns the path.
func CopyExecutable(tb testing.TB, src, dir, name string) string {
	tb.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if err := os.WriteFile(out, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	return out
}
