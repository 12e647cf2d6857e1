package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// The agent's executable is mapped into memory whole on kernels that
// cache files in large folios, so its size is part of the agent's RSS
// (issue 20). Two things kept 18 MiB in it that it never runs: etcd's
// server (the embedded etcd runs as baiagent-etcd instead) and any
// reachable use of reflect's Method/MethodByName, which makes the linker
// keep every exported method of every type that reaches an interface
// (go-redis's hundreds of commands among them). These tests keep both out.

func TestAgentLinksNoEtcdServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", testutil.BuildTags, "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/etcd/server/", "golang.org/x/net/trace"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("baiagent imports %s (find the importer with: go list -tags %s -deps -f '{{.ImportPath}}: {{.Imports}}' . | grep %s)",
					pkg, testutil.BuildTags, pkg)
			}
		}
	}
}

// TestLinkerDropsUnusedMethods links the agent with the linker's
// dependency dump (-dumpdep, "from -> to" per reachable edge) and fails
// when a function the compiler marked <ReflectMethod> is reachable, with
// the chain from main that reaches it.
func TestLinkerDropsUnusedMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("links the whole agent")
	}
	cmd := exec.Command("go", "build", "-tags", testutil.BuildTags, "-ldflags=-dumpdep", "-o", t.TempDir()+"/baiagent", ".")
	var dump bytes.Buffer
	cmd.Stderr = &dump
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%s", err, tail(dump.String(), 2000))
	}
	parent := map[string]string{}
	var marked []string
	scanner := bufio.NewScanner(&dump)
	scanner.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for scanner.Scan() {
		from, to, ok := strings.Cut(scanner.Text(), " -> ")
		if !ok {
			continue
		}
		for _, s := range []string{from, to} {
			if name, _, ok := strings.Cut(s, " <ReflectMethod>"); ok && !strings.HasPrefix(name, "reflect.") && !strings.HasPrefix(name, "type:reflect.") {
				marked = append(marked, name)
			}
		}
		from, _, _ = strings.Cut(from, " <")
		to, _, _ = strings.Cut(to, " <")
		if _, seen := parent[to]; !seen {
			parent[to] = from
		}
	}
	seen := map[string]bool{}
	for _, name := range marked {
		if seen[name] {
			continue
		}
		seen[name] = true
		chain := []string{name}
		for at := name; parent[at] != "" && len(chain) < 30; at = parent[at] {
			chain = append(chain, parent[at])
		}
		t.Errorf("%s calls reflect's Method or MethodByName and is reachable, so the linker keeps every exported method; reached by:\n  %s",
			name, strings.Join(chain, "\n  <- "))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
