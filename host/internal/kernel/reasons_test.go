package kernel_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/managertest"
)

// TestEveryReasonIsAManagerEnumMember reads this package's source for its
// Reason* constants, the reasons the agent chooses itself, and checks that
// each is a member of 26.8.1's KernelLifecycleEventReason
// (common/events/event_types/kernel/types.py): the manager unpickles them
// as that enum and drops an event whose value it lacks. A new constant is
// covered without touching this test.
func TestEveryReasonIsAManagerEnumMember(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				spec, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, name := range spec.Names {
					if !strings.HasPrefix(name.Name, "Reason") || i >= len(spec.Values) {
						continue
					}
					lit, ok := spec.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					value, _ := strconv.Unquote(lit.Value)
					found++
					if !slices.Contains(managertest.KernelLifecycleEventReasons, value) {
						t.Errorf("%s = %q is not a KernelLifecycleEventReason member", name.Name, value)
					}
				}
				return true
			})
		}
	}
	if found < 5 {
		t.Fatalf("found %d Reason constants; the source scan is broken", found)
	}
}
