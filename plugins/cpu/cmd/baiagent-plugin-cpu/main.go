// Command baiagent-plugin-cpu is the intrinsic cpu + mem compute plugin. The
// agent launches it through go-plugin; it must never write to stdout, which
// carries the handshake.
package main

import (
	"github.com/baiagent/baiagent/plugins/cpu"
	"github.com/baiagent/baiagent/proto/sdk"
)

func main() {
	logger := sdk.Logger("cpu")
	sdk.Serve(cpu.New(logger), logger)
}
