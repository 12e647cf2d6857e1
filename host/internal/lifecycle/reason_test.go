package lifecycle

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// upstreamMembers are the values of KernelLifecycleEventReason in
// Backend.AI 26.8.1, src/ai/backend/common/events/event_types/kernel/types.py,
// in the order that file declares them.
var upstreamMembers = []string{
	"agent-termination", "already-terminated", "anomaly-detected", "exec-timeout",
	"failed-to-create", "failed-to-start", "force-terminated", "bootstrap-timeout",
	"hang-timeout", "idle-timeout", "idle-session-lifetime", "idle-utilization",
	"killed-by-event", "service-scaled-down", "new-container-started", "pending-timeout",
	"restarting", "restart-timeout", "resuming-agent-operation", "self-terminated",
	"task-failed", "task-timeout", "task-cancelled", "task-finished",
	"terminated-unknown-container", "unknown", "user-requested", "user-purged",
	"not-found-in-manager", "container-not-found",
}

// TestReasonsAreTheManagersEnum pins Reasons to 26.8.1's enum, member for
// member, and reads this package's source so that a Reason constant left
// out of Reasons, or one the enum lacks, fails here.
func TestReasonsAreTheManagersEnum(t *testing.T) {
	var got []string
	for _, r := range Reasons() {
		got = append(got, string(r))
	}
	if !slices.Equal(got, upstreamMembers) {
		t.Fatalf("Reasons() = %v\nwant 26.8.1's %v", got, upstreamMembers)
	}
	fset := token.NewFileSet()
	// The package's own files, parsed one by one (parser.ParseDir is
	// deprecated).
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	found := 0
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			if typ, ok := spec.Type.(*ast.Ident); !ok || typ.Name != "Reason" {
				return true
			}
			for i, name := range spec.Names {
				lit, ok := spec.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s is not a string literal", name.Name)
					continue
				}
				value, _ := strconv.Unquote(lit.Value)
				found++
				if !Reason(value).Member() {
					t.Errorf("%s = %q is missing from Reasons()", name.Name, value)
				}
			}
			return true
		})
	}
	if found != len(upstreamMembers) {
		t.Fatalf("found %d Reason constants, want %d; the source scan is broken or a constant is extra", found, len(upstreamMembers))
	}
}

func TestMember(t *testing.T) {
	cases := []struct {
		reason Reason
		want   bool
	}{
		{SelfTerminated, true},
		{"ROUTE_TERMINATION", false}, // a manager's own str, echoed verbatim
		{"", false},
	}
	for _, tc := range cases {
		if got := tc.reason.Member(); got != tc.want {
			t.Errorf("Reason(%q).Member() = %v, want %v", tc.reason, got, tc.want)
		}
	}
}
