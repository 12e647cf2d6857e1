// Command baiagent-etcd is the agent's embedded etcd: a single-node etcd
// member that `baiagent server` starts as its child when agent.toml sets
// etcd.embedded = true. It runs in its own process so that etcd's server
// code stays out of the agent's executable (issue 20: the agent's memory).
//
//	baiagent-etcd --data-dir DIR --listen HOST:PORT
//
// It tells its parent it serves by one JSON line on stdout (etcdproc.Ready),
// logs JSON lines on stderr, and stops when its stdin closes: the agent
// holds the other end, so the member stops when the agent exits, however it
// exits. SIGINT and SIGTERM are ignored, so that a Ctrl-C or a service
// manager's stop reaching the whole process group does not take etcd away
// from an agent that is still shutting down.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdproc"
	"github.com/baiagent/baiagent/host/internal/etcdserver"
)

func main() {
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	if err := run(os.Args[1:], os.Stdin, os.Stdout, log); err != nil {
		log.Error().Err(err).Msg("embedded etcd failed")
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	flags := flag.NewFlagSet("baiagent-etcd", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	dataDir := flags.String("data-dir", "", "the member's data directory")
	listen := flags.String("listen", "", "the client address, host:port")
	if err := flags.Parse(args); err != nil {
		return fmt.Errorf("usage: baiagent-etcd --data-dir DIR --listen HOST:PORT: %w", err)
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	addr, err := config.ParseHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)

	srv, err := etcdserver.Start(context.Background(), *dataDir, addr, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := json.NewEncoder(stdout).Encode(etcdproc.Ready{Endpoint: srv.Endpoint()}); err != nil {
		return fmt.Errorf("tell the agent: %w", err)
	}
	// Nothing is sent on stdin; it only ends.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, stdin)
	}()
	select {
	case <-closed:
		log.Info().Msg("stdin closed: stopping")
		return nil
	case err := <-srv.Failed():
		return fmt.Errorf("serving: %w", err)
	}
}
