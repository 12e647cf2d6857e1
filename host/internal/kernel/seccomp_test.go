package kernel_test

import (
	"context"
	"os"
	"testing"

	"github.com/moby/moby/client"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// TestPluginAllowedSyscalls: a plugin's allowed syscalls are added to
// Docker's default seccomp profile for the kernels that got its devices,
// and the kernel really can make the call (kcmp, which the default profile
// refuses without CAP_SYS_PTRACE); other kernels keep the default profile.
func TestPluginAllowedSyscalls(t *testing.T) {
	e := newEnv(t)
	probe, err := os.ReadFile(testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/internal/kernel/testdata/kcmpprobe", t.TempDir(), "kcmpprobe"))
	if err != nil {
		t.Fatal(err)
	}
	e.plugins, e.allocator = kerneltest.Plugins(t, map[string]map[string]any{
		kerneltest.FakePlugin: {"syscalls": []any{"kcmp"}},
	})
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()
	ctx := context.Background()

	allowed := request(e.kid("k-kcmp"))
	allowed.ResourceSlots["fake.device"] = decimal.NewFromInt(1)
	cases := []struct {
		description string
		req         kernel.CreateRequest
		want        string
	}{
		{"kernel with the plugin's device may call kcmp", allowed, "allowed\n"},
		{"kernel without it keeps Docker's default profile", request(e.kid("k-default")), "blocked\n"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			created := create(t, m, tc.req)
			if err := m.UploadFile(tc.req.KernelID, "kcmpprobe", probe); err != nil {
				t.Fatal(err)
			}
			wantOutput(t, run(t, m, tc.req.KernelID, "r1", runnerclient.ModeQuery, "chmod +x kcmpprobe && ./kcmpprobe"), 0, tc.want)
			insp, err := e.docker.ContainerInspect(ctx, created.ContainerID, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if custom := len(insp.Container.HostConfig.SecurityOpt) > 0; custom != (tc.want == "allowed\n") {
				t.Errorf("security options %.80q", insp.Container.HostConfig.SecurityOpt)
			}
			if _, err := m.Destroy(ctx, tc.req.KernelID, lifecycle.UserRequested); err != nil {
				t.Fatal(err)
			}
		})
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
