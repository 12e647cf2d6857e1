package cpu

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixture returns the absolute path of a tree under testdata.
func fixture(t testing.TB, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeTree builds a host tree in a temp dir from path -> content.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fixtureReader reads root/{sys,proc,cgroup} with fake fallbacks, so no test
// depends on the machine it runs on.
func fixtureReader(root string, affinity []int, affinityErr error, numCPU int) hostReader {
	h := newHostReader(filepath.Join(root, "sys"), filepath.Join(root, "proc"), filepath.Join(root, "cgroup"))
	h.affinity = func() ([]int, error) { return affinity, affinityErr }
	h.numCPU = func() int { return numCPU }
	return h
}

func TestUsableCores(t *testing.T) {
	cases := []struct {
		description string
		root        func(t *testing.T) string
		affinity    []int
		affinityErr error
		numCPU      int
		want        []int
		wantSource  string
		wantErr     string
	}{
		{
			description: "cgroup v2 docker cpuset under system.slice",
			root:        func(t *testing.T) string { return fixture(t, "v2host") },
			affinity:    []int{0, 1}, numCPU: 16,
			want:       []int{2, 3, 4, 5, 6, 7, 10, 11, 12, 13},
			wantSource: "system.slice/cpuset.cpus.effective",
		},
		{
			description: "cgroup v1 docker cpuset.effective_cpus",
			root:        func(t *testing.T) string { return fixture(t, "v1host") },
			affinity:    []int{0}, numCPU: 8,
			want:       []int{0, 1, 2, 3},
			wantSource: "cpuset/docker/cpuset.effective_cpus",
		},
		{
			description: "docker/ comes before system.slice/",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{
					"cgroup/docker/cpuset.cpus.effective":       "0-1\n",
					"cgroup/system.slice/cpuset.cpus.effective": "0-7\n",
				})
			},
			numCPU: 8, want: []int{0, 1}, wantSource: "cgroup/docker/cpuset.cpus.effective",
		},
		{
			description: "an empty cpuset falls through to the affinity mask",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"cgroup/system.slice/cpuset.cpus.effective": "\n"})
			},
			affinity: []int{1, 3}, numCPU: 4, want: []int{1, 3}, wantSource: "sched_getaffinity",
		},
		{
			description: "no cpuset and no affinity mask falls back to the CPU count",
			root:        func(t *testing.T) string { return t.TempDir() },
			affinityErr: errors.New("not supported"), numCPU: 3, want: []int{0, 1, 2}, wantSource: "cpu count",
		},
		{
			description: "a malformed cpuset is an error naming the file",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"cgroup/system.slice/cpuset.cpus.effective": "3-1\n"})
			},
			numCPU: 4, wantErr: "system.slice/cpuset.cpus.effective: cpulist",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			h := fixtureReader(tc.root(t), tc.affinity, tc.affinityErr, tc.numCPU)
			got, source, err := h.usableCores()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !slices.Equal(got, tc.want) || !strings.HasSuffix(source, tc.wantSource) {
				t.Fatalf("got %v from %q, want %v from ...%q", got, source, tc.want, tc.wantSource)
			}
		})
	}
}

func TestNUMANodes(t *testing.T) {
	cases := []struct {
		description string
		root        func(t *testing.T) string
		cores       []int
		want        map[int]int
		wantErr     string
	}{
		{
			description: "two nodes from node*/cpulist",
			root:        func(t *testing.T) string { return fixture(t, "v2host") },
			cores:       []int{2, 3, 4, 10, 12},
			want:        map[int]int{0: 0, 1: 0, 2: 0, 3: 0, 8: 0, 9: 0, 10: 0, 11: 0, 4: 1, 5: 1, 6: 1, 7: 1, 12: 1, 13: 1, 14: 1, 15: 1},
		},
		{
			description: "cpu/cpuN/nodeM entries when there is no node directory",
			root:        func(t *testing.T) string { return fixture(t, "v1host") },
			cores:       []int{0, 1, 2, 3},
			want:        map[int]int{0: 0, 1: 0, 2: 1, 3: 1},
		},
		{
			description: "no NUMA information means node 0",
			root:        func(t *testing.T) string { return t.TempDir() },
			cores:       []int{0, 5},
			want:        map[int]int{0: 0, 5: 0},
		},
		{
			description: "a malformed node cpulist names the node",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"sys/devices/system/node/node1/cpulist": "0-x\n"})
			},
			cores:   []int{0},
			wantErr: "numa node 1 cpulist",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := fixtureReader(tc.root(t), nil, nil, 1).numaNodes(tc.cores)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMemory(t *testing.T) {
	const meminfo = "MemTotal: 4194304 kB\nMemAvailable: 1048576 kB\n" // 4 GiB, 1 GiB available
	cases := []struct {
		description string
		root        func(t *testing.T) string
		wantTotal   uint64
		wantUsable  uint64
		wantSource  string
		wantErr     string
	}{
		{
			description: "v2 system.slice limit below MemTotal wins",
			root:        func(t *testing.T) string { return fixture(t, "v2host") },
			wantTotal:   16384000 * 1024, wantUsable: 8 << 30, wantSource: "system.slice/memory.max",
		},
		{
			description: "v1 unlimited docker cgroup leaves MemTotal",
			root:        func(t *testing.T) string { return fixture(t, "v1host") },
			wantTotal:   4096000 * 1024, wantUsable: 4096000 * 1024, wantSource: "meminfo",
		},
		{
			description: "a limit above MemTotal leaves MemTotal",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"proc/meminfo": meminfo, "cgroup/docker/memory.max": "17179869184\n"})
			},
			wantTotal: 4 << 30, wantUsable: 4 << 30, wantSource: "meminfo",
		},
		{
			description: "v2 max means unlimited",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"proc/meminfo": meminfo, "cgroup/system.slice/memory.max": "max\n"})
			},
			wantTotal: 4 << 30, wantUsable: 4 << 30, wantSource: "meminfo",
		},
		{
			description: "v1 limit below MemTotal wins",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"proc/meminfo": meminfo, "cgroup/memory/docker/memory.limit_in_bytes": "1073741824\n"})
			},
			wantTotal: 4 << 30, wantUsable: 1 << 30, wantSource: "memory/docker/memory.limit_in_bytes",
		},
		{
			description: "missing meminfo",
			root:        func(t *testing.T) string { return t.TempDir() },
			wantErr:     "read meminfo",
		},
		{
			description: "meminfo without MemTotal",
			root:        func(t *testing.T) string { return writeTree(t, map[string]string{"proc/meminfo": "MemFree: 1 kB\n"}) },
			wantErr:     "no MemTotal",
		},
		{
			description: "a malformed limit names the file",
			root: func(t *testing.T) string {
				return writeTree(t, map[string]string{"proc/meminfo": meminfo, "cgroup/docker/memory.max": "lots\n"})
			},
			wantErr: "docker/memory.max",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := fixtureReader(tc.root(t), nil, nil, 1).memory()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.total != tc.wantTotal || got.usable != tc.wantUsable || !strings.HasSuffix(got.limitSource, tc.wantSource) {
				t.Fatalf("got total %d usable %d from %q, want %d, %d from ...%q", got.total, got.usable, got.limitSource, tc.wantTotal, tc.wantUsable, tc.wantSource)
			}
		})
	}
}

func u64(n uint64) *uint64 { return &n }

func TestContainerStats(t *testing.T) {
	cases := []struct {
		description  string
		root         string
		cgroupPath   string
		want         containerStats
		wantProblems int
		wantGone     bool
		wantErr      string
	}{
		{
			description: "cgroup v2 container",
			root:        "v2host", cgroupPath: "/system.slice/docker-4f1c9a.scope",
			want: containerStats{
				cpuUsedMicros: u64(2500000),
				memUsed:       u64(1073741824 - 134217728), memLimit: u64(2147483648),
				ioRead: u64(1459200 + 3387392), ioWrite: u64(314773504 + 176128),
			},
		},
		{
			description: "cgroup v2 container without a memory limit or io controller",
			root:        "v2host", cgroupPath: "system.slice/docker-77aa01.scope",
			want: containerStats{cpuUsedMicros: u64(1000), memUsed: u64(4096)},
		},
		{
			description: "a malformed cpu.stat is a problem, the rest is read",
			root:        "v2host", cgroupPath: "system.slice/docker-bad000.scope",
			want:         containerStats{memUsed: u64(8192)},
			wantProblems: 1,
		},
		{
			description: "cgroup v1 container across cpu,cpuacct, memory and blkio",
			root:        "v1host", cgroupPath: "docker/9e8d7c",
			want: containerStats{
				cpuUsedMicros: u64(3500000),
				memUsed:       u64(536870912 - 67108864), memLimit: u64(1073741824),
				ioRead: u64(13918208 + 100), ioWrite: u64(4096 + 200),
			},
		},
		{
			description: "a container that is gone",
			root:        "v2host", cgroupPath: "system.slice/docker-gone.scope",
			wantGone: true,
		},
		{
			description: "a v1 container that is gone",
			root:        "v1host", cgroupPath: "docker/gone",
			wantGone: true,
		},
		{
			description: "a path escaping the cgroup root is cleaned below it",
			root:        "v2host", cgroupPath: "../../system.slice/docker-4f1c9a.scope",
			want: containerStats{
				cpuUsedMicros: u64(2500000),
				memUsed:       u64(1073741824 - 134217728), memLimit: u64(2147483648),
				ioRead: u64(1459200 + 3387392), ioWrite: u64(314773504 + 176128),
			},
		},
		{
			description: "the root itself is not a container",
			root:        "v2host", cgroupPath: "/",
			wantErr: "not below the cgroup root",
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			h := fixtureReader(fixture(t, tc.root), nil, nil, 1)
			got, problems, err := h.containerStats(tc.cgroupPath)
			switch {
			case tc.wantGone:
				if !errors.Is(err, errContainerGone) {
					t.Fatalf("error = %v, want errContainerGone", err)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			if len(problems) != tc.wantProblems {
				t.Fatalf("problems %v, want %d", problems, tc.wantProblems)
			}
			for _, field := range []struct {
				name      string
				got, want *uint64
			}{
				{"cpuUsedMicros", got.cpuUsedMicros, tc.want.cpuUsedMicros},
				{"memUsed", got.memUsed, tc.want.memUsed},
				{"memLimit", got.memLimit, tc.want.memLimit},
				{"ioRead", got.ioRead, tc.want.ioRead},
				{"ioWrite", got.ioWrite, tc.want.ioWrite},
			} {
				if (field.got == nil) != (field.want == nil) || (field.got != nil && *field.got != *field.want) {
					t.Errorf("%s = %v, want %v", field.name, deref(field.got), deref(field.want))
				}
			}
		})
	}
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}
