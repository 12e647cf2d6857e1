// Command baiagent-plugin-tpu is the Google Cloud TPU compute plugin. The
// agent launches it; stdout belongs to go-plugin's handshake, so it logs to
// stderr only.
package main

import (
	"github.com/baiagent/baiagent/plugins/tpu"
	"github.com/baiagent/baiagent/proto/sdk"
)

func main() {
	logger := sdk.Logger("tpu")
	plugin := tpu.New(tpu.WithLogger(logger))
	defer plugin.Close()
	sdk.Serve(plugin, logger)
}
