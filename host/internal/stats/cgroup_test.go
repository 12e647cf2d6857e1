package stats

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestCgroupPathOfPID(t *testing.T) {
	cases := []struct {
		description string
		content     string
		want        string
		wantErr     bool
	}{
		{"cgroup v2 with the systemd driver", "0::/system.slice/docker-abc.scope\n", "system.slice/docker-abc.scope", false},
		{"cgroup v1 prefers cpuacct", "12:memory:/docker/mem\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n", "docker/abc", false},
		{"cgroup v1 without cpuacct uses memory", "12:memory:/docker/abc\n", "docker/abc", false},
		{"hybrid: v1 controllers win over the unified entry", "4:cpu,cpuacct:/docker/abc\n0::/init.scope\n", "docker/abc", false},
		{"a path with a colon", "0::/kubepods/pod:x\n", "kubepods/pod:x", false},
		{"root cgroup is an error", "0::/\n", "", true},
	}
	for i, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			root := t.TempDir()
			pid := 100 + i
			dir := filepath.Join(root, strconv.Itoa(pid))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := CgroupPathOfPID(root, pid)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("CgroupPathOfPID = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	t.Run("missing process", func(t *testing.T) {
		if _, err := CgroupPathOfPID(t.TempDir(), 4242); err == nil {
			t.Error("no error for a missing process")
		}
	})
}
