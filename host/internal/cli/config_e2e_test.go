package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baiagent/baiagent/host/internal/managertest"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// TestManualAllocationAndPIDFile runs a real agent with the dev config's
// two fake GPUs, allocation-mode = "manual" and a pid-file, against a real
// Redis. As upstream's ResourceAllocator (agent/resources.py) and server
// (agent/server.py, 26.8.1): the heartbeat the manager reads offers exactly
// [resource.allocations], and the pid file exists while the agent runs and
// is gone after it stops.
func TestManualAllocationAndPIDFile(t *testing.T) {
	srv := redistest.Start(t, false)
	reader := managertest.NewReader(t, srv.Addr)
	fixtures := filepath.Join(repoRoot(t), "configs", "fixtures")
	a := buildAgentWith(t, fmt.Sprintf("\n[redis]\naddr = %q\n\n[plugins.cuda]\nfake-devices = %q\nsysfs-root = %q\n",
		srv.Addr, filepath.Join(fixtures, "cuda-2xA100.toml"), filepath.Join(fixtures, "sysfs-2xA100")))
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cuda/cmd/baiagent-plugin-cuda", filepath.Join(a.binDir, "plugins"), "baiagent-plugin-cuda")
	pidFile := filepath.Join(t.TempDir(), "agent.pid")
	text := string(mustRead(t, a.config))
	for _, r := range []struct{ old, new string }{
		{"[agent]\n", fmt.Sprintf("[agent]\npid-file = %q\n", pidFile)},
		{`allow-compute-plugins = ["cpu"]`, `allow-compute-plugins = ["cpu", "cuda"]`},
		{"reserved-mem = \"1G\"\n", "reserved-mem = \"1G\"\nallocation-mode = \"manual\"\n" +
			"[resource.allocations]\ncpu = 1\nmem = \"1G\"\ndevices = { \"cuda.device\" = 1 }\n"},
	} {
		if !strings.Contains(text, r.old) {
			t.Fatalf("the test agent.toml lacks %q", r.old)
		}
		text = strings.Replace(text, r.old, r.new, 1)
	}
	if err := os.WriteFile(a.config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	a.start(t)
	if data, err := os.ReadFile(pidFile); err != nil || string(data) != strconv.Itoa(a.cmd.Process.Pid) {
		t.Errorf("pid file while running: %q %v, want %d", data, err, a.cmd.Process.Pid)
	}
	hb := reader.WaitStream(time.Minute, func(ev managertest.Event) bool { return ev.Name == "agent_heartbeat" })
	info, _ := hb.Args[0].(wiremsg.Map)
	slots, _ := info["available_resource_slots"].(wiremsg.ResourceSlot)
	got := map[string]string{}
	for _, slot := range slots {
		got[slot.Name] = slot.Amount.String()
	}
	want := map[string]string{"cpu": "1", "mem": "1073741824", "cuda.device": "1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("heartbeat's available slots %v, want exactly the allocations %v", got, want)
	}
	a.stop(t)
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left after stop: %v", err)
	}
}
