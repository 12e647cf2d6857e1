package cli

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/version"
	"github.com/baiagent/baiagent/proto/sdk"
)

func TestVersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Execute([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"baiagent " + version.Version,
		"commit: " + version.Get().Commit,
		"go: " + runtime.Version(),
		"plugin API: " + sdk.APIVersion,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("version printed\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}
}
