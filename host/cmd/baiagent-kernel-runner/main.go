// Command baiagent-kernel-runner is the entrypoint the agent mounts into
// every kernel container: baiagent-kernel-runner [RUNTIME-TYPE [RUNTIME-PATH]].
// Build it static (CGO_ENABLED=0) so it runs in any image.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/baiagent/baiagent/host/internal/runner"
)

func main() {
	// The intrinsic sshd runs SFTP sessions as the kernel user through
	// this binary.
	if len(os.Args) == 2 && os.Args[1] == runner.SFTPServerCommand {
		wd, _ := os.Getwd()
		if err := runner.ServeSFTP(stdio{}, wd); err != nil {
			fmt.Fprintln(os.Stderr, "baiagent-kernel-runner:", err)
			os.Exit(1)
		}
		return
	}
	var runtimeType, runtimePath string
	if len(os.Args) > 1 {
		runtimeType = os.Args[1]
	}
	if len(os.Args) > 2 {
		runtimePath = os.Args[2]
	}
	// docker stop sends SIGINT (the container's StopSignal) through the init.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := runner.DefaultConfig(runtimeType, runtimePath)
	// In host network mode the agent gives the runner its ports.
	if err == nil {
		err = runner.ApplyIntrinsicPorts(&cfg, runner.IntrinsicPortsPath)
	}
	if err == nil {
		err = runner.Run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "baiagent-kernel-runner:", err)
		os.Exit(1)
	}
}

// stdio is this process's stdin and stdout as one stream.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
