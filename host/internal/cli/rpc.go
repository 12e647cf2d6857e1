package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

type rpcFlags struct {
	addr             string
	managerKeypair   string
	agentPublicKey   string
	timeout          time.Duration
	argsJSON         string
	kwargsJSON       string
	handshakeTimeout time.Duration
}

// newRPCCommand adds "baiagent rpc": the manager's side of the RPC, for
// checking an agent by hand.
func newRPCCommand(_ *options) *cobra.Command {
	flags := &rpcFlags{}
	rpc := &cobra.Command{
		Use:   "rpc",
		Short: "Call an agent's manager RPC as the manager does (callosum over ZeroMQ)",
	}
	rpc.PersistentFlags().StringVar(&flags.addr, "addr", "tcp://127.0.0.1:6001", "agent RPC endpoint")
	rpc.PersistentFlags().StringVar(&flags.managerKeypair, "manager-keypair", "", "manager's CURVE certificate with secret key (turns on CURVE)")
	rpc.PersistentFlags().StringVar(&flags.agentPublicKey, "agent-public-key", "", "agent's CURVE public certificate (with --manager-keypair)")
	rpc.PersistentFlags().DurationVar(&flags.timeout, "timeout", 30*time.Second, "call timeout")
	rpc.PersistentFlags().DurationVar(&flags.handshakeTimeout, "handshake-timeout", 5*time.Second, "PING/PONG handshake timeout")

	call := &cobra.Command{
		Use:   "call METHOD",
		Short: "Invoke METHOD with JSON args and kwargs and print the result as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			callArgs, err := parseJSONArgs(flags.argsJSON)
			if err != nil {
				return fmt.Errorf("--args: %w", err)
			}
			callKwargs, err := parseJSONKwargs(flags.kwargsJSON)
			if err != nil {
				return fmt.Errorf("--kwargs: %w", err)
			}
			return withClient(cmd.Context(), flags, func(ctx context.Context, c *callosum.Client) error {
				result, err := c.Invoke(ctx, args[0], callArgs, callKwargs)
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), result)
			})
		},
	}
	call.Flags().StringVar(&flags.argsJSON, "args", "[]", "positional arguments as a JSON array")
	call.Flags().StringVar(&flags.kwargsJSON, "kwargs", "{}", "keyword arguments as a JSON object")

	ping := &cobra.Command{
		Use:   "ping",
		Short: "Handshake with the agent and call ping(\"ping\"), printing the round-trip time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), flags, func(ctx context.Context, c *callosum.Client) error {
				start := time.Now()
				result, err := c.Invoke(ctx, "ping", []any{"ping"}, nil)
				if err != nil {
					return err
				}
				if result != "ping" {
					return fmt.Errorf("ping returned %#v", result)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "pong from %s in %v\n", flags.addr, time.Since(start).Round(time.Microsecond))
				return nil
			})
		},
	}
	rpc.AddCommand(call, ping)
	return rpc
}

func withClient(parent context.Context, flags *rpcFlags, use func(context.Context, *callosum.Client) error) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, flags.timeout)
	defer cancel()
	opts := callosum.ClientOptions{HandshakeTimeout: flags.handshakeTimeout}
	if (flags.managerKeypair == "") != (flags.agentPublicKey == "") {
		return fmt.Errorf("--manager-keypair and --agent-public-key go together")
	}
	if flags.managerKeypair != "" {
		manager, err := callosum.LoadCertificate(flags.managerKeypair)
		if err != nil {
			return err
		}
		agentCert, err := callosum.LoadCertificate(flags.agentPublicKey)
		if err != nil {
			return err
		}
		opts.Certificate, opts.ServerPublicKey = &manager, agentCert.PublicKey
	}
	c, err := callosum.Dial(ctx, flags.addr, opts)
	if err != nil {
		return fmt.Errorf("connect %s: %w", flags.addr, err)
	}
	defer c.Close()
	return use(ctx, c)
}

func decodeJSON(text string, dst any) error {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	return nil
}

func parseJSONArgs(text string) ([]any, error) {
	var raw []any
	if err := decodeJSON(text, &raw); err != nil {
		return nil, err
	}
	return jsonToWire(raw).([]any), nil
}

func parseJSONKwargs(text string) (map[string]any, error) {
	var raw map[string]any
	if err := decodeJSON(text, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]any{}, nil
	}
	return jsonToWire(raw).(map[string]any), nil
}

// jsonToWire turns JSON numbers into int64 where they are integers, as a
// Python manager would send them.
func jsonToWire(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = jsonToWire(item)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = jsonToWire(item)
		}
		return out
	}
	return v
}

func printJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(wiremsg.ToJSON(v)); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
