// Command baiagent-plugin-rocm is the AMD GPU compute plugin. The agent
// launches it; stdout belongs to go-plugin's handshake, so it logs to stderr
// only.
package main

import (
	"github.com/baiagent/baiagent/plugins/rocm"
	"github.com/baiagent/baiagent/proto/sdk"
)

func main() {
	logger := sdk.Logger("rocm")
	plugin := rocm.New(rocm.WithLogger(logger))
	defer plugin.Close()
	sdk.Serve(plugin, logger)
}
