package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyIntrinsicPorts pins upstream's reading of intrinsic-ports.json
// (kernel/base.py BaseRunner._init: replin/replout default "2000"/"2001",
// sshd 2200 in _init_with_loop's intrinsic services).
func TestApplyIntrinsicPorts(t *testing.T) {
	for _, tc := range []struct {
		description     string
		file            string // "" leaves no file
		wantIn, wantOut string
		wantSSHD        int
		wantErr         string
	}{
		{"no file keeps the defaults", "", "tcp://0.0.0.0:2000", "tcp://0.0.0.0:2001", 2200, ""},
		{"host mode ports", `{"replin": 30001, "replout": 30002, "sshd": 30003}`, "tcp://127.0.0.1:30001", "tcp://127.0.0.1:30002", 30003, ""},
		{"numeric strings as upstream's defaults", `{"replin": "30001", "replout": "30002"}`, "tcp://127.0.0.1:30001", "tcp://127.0.0.1:30002", 2200, ""},
		{"ttyd is ignored", `{"replin": 30001, "replout": 30002, "ttyd": 30004}`, "tcp://127.0.0.1:30001", "tcp://127.0.0.1:30002", 2200, ""},
		{"not JSON", `replin=1`, "", "", 0, "invalid character"},
		{"a port out of range", `{"replin": 70000}`, "", "", 0, `"replin": port 70000 is out of range`},
		{"a word", `{"sshd": "ssh"}`, "", "", 0, `"sshd": "ssh" is not a port number`},
		{"a list", `{"sshd": [1]}`, "", "", 0, `"sshd": [1] is not a port number`},
	} {
		path := filepath.Join(t.TempDir(), "intrinsic-ports.json")
		if tc.file != "" {
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := DefaultConfig("", "")
		if err != nil {
			t.Fatal(err)
		}
		err = ApplyIntrinsicPorts(&cfg, path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one with %q", tc.description, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.InputAddr != tc.wantIn || cfg.OutputAddr != tc.wantOut || cfg.SSHD.BootPort != tc.wantSSHD {
			t.Errorf("%s: %v, in %s out %s sshd %d; want %s %s %d", tc.description, err, cfg.InputAddr, cfg.OutputAddr, cfg.SSHD.BootPort, tc.wantIn, tc.wantOut, tc.wantSSHD)
		}
	}
}
