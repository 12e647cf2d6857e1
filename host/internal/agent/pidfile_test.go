package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPIDFile pins upstream's agent/server.py (26.8.1): the pid is written
// at start and the file removed at exit, and /dev/null (the default) is
// never touched.
func TestPIDFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		description string
		path        string
		before      func(path string)
		wantErr     string
		wantAfter   string // content left after remove; "" = gone
	}{
		{"written and removed", filepath.Join(dir, "agent.pid"), nil, "", ""},
		{"an old file is replaced", filepath.Join(dir, "old.pid"), func(p string) { _ = os.WriteFile(p, []byte("1"), 0o644) }, "", ""},
		{"a file taken over by another agent survives", filepath.Join(dir, "taken.pid"), nil, "", "99999999"},
		{"a directory is refused", dir, nil, "not a regular file", ""},
		{"a missing parent is named", filepath.Join(dir, "no", "agent.pid"), nil, "agent.pid-file", ""},
		{"the default /dev/null writes nothing", os.DevNull, nil, "", ""},
	}
	for _, tc := range cases {
		if tc.before != nil {
			tc.before(tc.path)
		}
		remove, err := WritePIDFile(tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.description, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.description, err)
			continue
		}
		if tc.path == os.DevNull {
			if err := remove(); err != nil {
				t.Errorf("%s: %v", tc.description, err)
			}
			if _, err := os.Stat(os.DevNull); err != nil {
				t.Errorf("%s: /dev/null gone: %v", tc.description, err)
			}
			continue
		}
		data, _ := os.ReadFile(tc.path)
		if string(data) != strconv.Itoa(os.Getpid()) {
			t.Errorf("%s: pid file holds %q", tc.description, data)
		}
		if tc.wantAfter != "" {
			_ = os.WriteFile(tc.path, []byte(tc.wantAfter), 0o644)
		}
		if err := remove(); err != nil {
			t.Errorf("%s: remove: %v", tc.description, err)
		}
		data, err = os.ReadFile(tc.path)
		if tc.wantAfter == "" && !os.IsNotExist(err) {
			t.Errorf("%s: pid file left behind: %q %v", tc.description, data, err)
		}
		if tc.wantAfter != "" && string(data) != tc.wantAfter {
			t.Errorf("%s: another agent's pid file was changed: %q %v", tc.description, data, err)
		}
	}
}
