// Command baiagent-plugin-cuda is the NVIDIA GPU compute plugin. The agent
// launches it; stdout belongs to go-plugin's handshake, so it logs to stderr
// only.
package main

import (
	"github.com/baiagent/baiagent/plugins/cuda"
	"github.com/baiagent/baiagent/proto/sdk"
)

func main() {
	logger := sdk.Logger("cuda")
	plugin := cuda.New(cuda.WithLogger(logger))
	defer plugin.Close()
	sdk.Serve(plugin, logger)
}
