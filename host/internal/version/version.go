// Package version holds the agent's version, reported in heartbeats, the
// RPC health answer and `baiagent version`.
package version

// Version is overridden at build time with
// -ldflags "-X github.com/baiagent/baiagent/host/internal/version.Version=...".
var Version = "0.1.0-dev"
