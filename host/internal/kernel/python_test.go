package kernel_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/kernel/runnerclient"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
)

// TestPythonKernelSession runs a kernel of a real python image (Debian's
// python3 from debootstrap, labelled as upstream's python images are) and
// uses it as the manager's query mode does: one persistent interpreter, so
// a name bound in one execute is there in the next, definitions span
// lines, a last expression's value is shown, and an exception prints its
// traceback on stderr without ending the session.
func TestPythonKernelSession(t *testing.T) {
	e := newEnv(t)
	image := kerneltest.BuildPython(t, e.docker)
	m := e.manager(t)
	start(t, m)
	before := e.allocator.Snapshot()

	req := request(e.kid("k-py"))
	req.Image = image
	created := create(t, m, req)
	insp, err := e.docker.ContainerInspect(context.Background(), created.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cmd := insp.Container.Config.Cmd; len(cmd) != 2 || cmd[0] != kerneltest.PythonRuntimeType || cmd[1] != kerneltest.PythonRuntimePath {
		t.Errorf("runner arguments %q, want the image's runtime-type and runtime-path labels", cmd)
	}

	wantOutput(t, run(t, m, e.kid("k-py"), "r1", runnerclient.ModeQuery, "import sys\nx = 41"), 0, "")
	wantOutput(t, run(t, m, e.kid("k-py"), "r2", runnerclient.ModeQuery, "print(x + 1)"), 0, "42\n")
	wantOutput(t, run(t, m, e.kid("k-py"), "r3", runnerclient.ModeQuery, "print(sys.executable, sys.version_info[0])"), 0, "/usr/bin/python3 3\n")
	wantOutput(t, run(t, m, e.kid("k-py"), "r4", runnerclient.ModeQuery,
		"def fact(n):\n    if n < 2:\n        return 1\n    return n * fact(n - 1)\n\nfor i in (3, 10):\n    print(i, fact(i))\n"), 0,
		"3 6\n10 3628800\n")
	wantOutput(t, run(t, m, e.kid("k-py"), "r5", runnerclient.ModeQuery, "fact(5) + x"), 0, "161\n")

	res := run(t, m, e.kid("k-py"), "r6", runnerclient.ModeQuery, "def boom():\n    return 1 / 0\n\nboom()")
	errText := consoleOf(res, "stderr")
	if res.Status != runnerclient.StatusFinished || res.ExitCode == nil || *res.ExitCode == 0 || stdout(res) != "" ||
		!strings.Contains(errText, "Traceback (most recent call last):") || !strings.Contains(errText, "in boom") ||
		!strings.Contains(errText, "ZeroDivisionError: division by zero") {
		t.Fatalf("exception: status %s exit %v stdout %q stderr %q", res.Status, deref(res.ExitCode), stdout(res), errText)
	}
	// The session survived the exception, with its names.
	wantOutput(t, run(t, m, e.kid("k-py"), "r7", runnerclient.ModeQuery, "x += 1\nprint(x, fact(4))"), 0, "42 24\n")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	term, err := m.Destroy(ctx, e.kid("k-py"), "")
	if err != nil || term.Reason != lifecycle.UserRequested {
		t.Fatalf("destroy: %+v, %v", term, err)
	}
	e.wantIdle(t, e.allocator, e.ports, before)
}
