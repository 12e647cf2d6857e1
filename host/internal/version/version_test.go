package version

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/baiagent/baiagent/proto/sdk"
)

func TestCommitFromBuildInfo(t *testing.T) {
	cases := []struct {
		name     string
		bi       *debug.BuildInfo
		settings []debug.BuildSetting
		want     string
	}{
		{"no build info", nil, nil, "unknown"},
		{"no vcs", &debug.BuildInfo{}, nil, "unknown"},
		{"clean", &debug.BuildInfo{}, []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}, "abc123"},
		{"dirty", &debug.BuildInfo{}, []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: "abc123"}}, "abc123-dirty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.bi != nil {
				c.bi.Settings = c.settings
			}
			if got := commitFromBuildInfo(c.bi); got != c.want {
				t.Fatalf("commitFromBuildInfo = %q, want %q", got, c.want)
			}
		})
	}
}

func TestGetPrefersStampedCommit(t *testing.T) {
	old := Commit
	t.Cleanup(func() { Commit = old })
	Commit = "stamped"
	info := Get()
	if info.Commit != "stamped" || info.GoVersion != runtime.Version() || info.PluginAPIVersion != sdk.APIVersion || info.Version != Version {
		t.Fatalf("Get() = %+v", info)
	}
	Commit = ""
	if Get().Commit == "" {
		t.Fatal("unstamped commit is empty, want a revision or \"unknown\"")
	}
}
