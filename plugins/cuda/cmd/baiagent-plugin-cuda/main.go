// Command baiagent-plugin-cuda is the NVIDIA GPU compute plugin. The agent
// launches it; stdout belongs to go-plugin's handshake, so it logs to stderr
// only.
package main

import (
	"time"

	"github.com/baiagent/baiagent/plugins/cuda"
	"github.com/baiagent/baiagent/proto/sdk"
)

// closeGrace bounds how long the plugin waits for NVML on the way out.
// go-plugin SIGKILLs a plugin 2 s after Shutdown; a driver stuck in an
// event wait must not make every agent stop pay that.
const closeGrace = 500 * time.Millisecond

func main() {
	logger := sdk.Logger("cuda")
	plugin := cuda.New(cuda.WithLogger(logger))
	sdk.Serve(plugin, logger)

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		plugin.Close()
	}()
	select {
	case <-closed:
	case <-time.After(closeGrace):
		// Exiting abandons the stuck call; the kernel releases NVML's
		// file descriptors with the process.
		logger.Warn("NVML did not return in time; exiting without shutting it down", "waited", closeGrace)
	}
}
