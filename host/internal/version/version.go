// Package version holds the agent's version, reported in heartbeats, the
// RPC health answer and `baiagent version`.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/baiagent/baiagent/proto/sdk"
)

// Version and Commit are stamped at build time (scripts/build.sh) with
// -ldflags "-X github.com/baiagent/baiagent/host/internal/version.Version=..."
// and "...version.Commit=...". Without the stamp, Commit falls back to the
// revision the Go toolchain recorded from git (see Info).
var (
	Version = "0.1.0-dev"
	Commit  = ""
)

// Info is what `baiagent version` prints.
type Info struct {
	Version          string
	Commit           string
	GoVersion        string
	PluginAPIVersion string
}

// Get returns the running binary's Info.
func Get() Info {
	info := Info{
		Version:          Version,
		Commit:           Commit,
		GoVersion:        runtime.Version(),
		PluginAPIVersion: sdk.APIVersion,
	}
	if info.Commit == "" {
		bi, _ := debug.ReadBuildInfo()
		info.Commit = commitFromBuildInfo(bi)
	}
	return info
}

// commitFromBuildInfo is vcs.revision (with "-dirty" when the tree had
// uncommitted changes), or "unknown" for a build without VCS stamping
// (-buildvcs=false, go run, a tree without git).
func commitFromBuildInfo(bi *debug.BuildInfo) string {
	if bi == nil {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
