package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/baiagent/baiagent/host/internal/callosum"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/lifecycle"
	"github.com/baiagent/baiagent/host/internal/rpcserver"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

type kernelFlags struct {
	rpcFlags
	image        string
	cpu          string
	mem          string
	cuda         string
	slotFlags    []string
	env          []string
	keep         bool
	sessionID    string
	flushTimeout time.Duration
	reason       string
	// sessionType, startupCommand and batchTimeout: kernel run --type batch.
	sessionType    string
	startupCommand string
	batchTimeout   time.Duration
	// modelDef and modelDir: kernel run --type inference.
	modelDef string
	modelDir string
}

// newKernelCommand adds "baiagent kernel": run, list, exec and destroy
// kernels through the agent's manager RPC, as the manager would.
func newKernelCommand(_ *options) *cobra.Command {
	flags := &kernelFlags{}
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Run, list, execute in and destroy kernels through the agent's manager RPC",
		Long: `The kernel commands talk to a running agent over its manager RPC socket
(callosum over ZeroMQ), exactly as the manager does: "run" calls create_kernels
and execute, "exec" calls execute, "destroy" calls destroy_kernel. "list" calls
baiagent_list_kernels, a baiagent extension the manager never uses.

Images are never pulled: the image must be present in the local Docker engine
(run sends auto_pull "none").`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&flags.addr, "addr", "tcp://127.0.0.1:6001", "agent RPC endpoint")
	pf.StringVar(&flags.managerKeypair, "manager-keypair", "", "manager's CURVE certificate with secret key (turns on CURVE)")
	pf.StringVar(&flags.agentPublicKey, "agent-public-key", "", "agent's CURVE public certificate (with --manager-keypair)")
	pf.DurationVar(&flags.timeout, "timeout", 5*time.Minute, "overall timeout of the command")
	pf.DurationVar(&flags.handshakeTimeout, "handshake-timeout", 5*time.Second, "PING/PONG handshake timeout")

	run := &cobra.Command{
		Use:   "run --image IMAGE [--cpu N] [--mem SIZE] [--cuda N] [--slot KEY=AMOUNT]... CODE | --type batch --startup-command CMD | --type inference --model-def FILE --model-dir DIR",
		Short: "Create a kernel, run CODE in it (query mode) and destroy it unless --keep; or start a batch or inference session",
		Long: "With --type batch the kernel is a batch session's: the agent runs --startup-command in it\n" +
			"(trigger_batch_execution, as the manager does) and reports the result to the manager as\n" +
			"session_success or session_failure; the kernel is left running for the manager to end.\n" +
			"With --type inference --model-def FILE --model-dir DIR the kernel serves the definition's\n" +
			"models: DIR is its model folder (at /models), and the agent starts each model service and\n" +
			"publishes its inference port; the kernel is left running.",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case flags.sessionType == "batch" && len(args) == 0:
				return flags.runBatch(cmd)
			case flags.sessionType == "batch":
				return errors.New("--type batch runs --startup-command, not CODE")
			case flags.sessionType == "inference" && len(args) == 0:
				return flags.runInference(cmd)
			case flags.sessionType == "inference":
				return errors.New("--type inference runs the model definition's services, not CODE")
			case flags.sessionType != "interactive":
				return fmt.Errorf("--type %q: want interactive, batch or inference", flags.sessionType)
			case len(args) != 1:
				return errors.New("CODE is required")
			}
			return flags.run(cmd, args[0])
		},
	}
	run.Flags().StringVar(&flags.sessionType, "type", "interactive", "session type: interactive, batch or inference")
	run.Flags().StringVar(&flags.modelDef, "model-def", "", "inference: the model definition (YAML or JSON), sent as internal_data.model_definition")
	run.Flags().StringVar(&flags.modelDir, "model-dir", "", "inference: the model folder, mounted at /models with usage_mode model")
	run.Flags().StringVar(&flags.startupCommand, "startup-command", "", "batch: the job (\"\" finishes at once, \"*\" runs main.sh/main.py)")
	run.Flags().DurationVar(&flags.batchTimeout, "batch-timeout", 0, "batch: report task-timeout after this long (0: none)")
	run.Flags().StringVar(&flags.image, "image", "", "local image, e.g. cr.backend.ai/stable/python:3.11 (required)")
	run.Flags().StringVar(&flags.cpu, "cpu", "1", "cpu slot (cores)")
	run.Flags().StringVar(&flags.mem, "mem", "256m", "mem slot (a binary size: 512m, 1g, bytes)")
	run.Flags().StringVar(&flags.cuda, "cuda", "0", "GPUs (cuda.device slot); 0 for none")
	run.Flags().StringArrayVar(&flags.slotFlags, "slot", nil,
		"any plugin's slot KEY=AMOUNT, e.g. cuda.shares=0.5, rocm.device=1, cuda.mem=4g (repeatable; overrides --cpu/--mem/--cuda for the same key)")
	run.Flags().StringArrayVarP(&flags.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	run.Flags().BoolVar(&flags.keep, "keep", false, "leave the kernel running and print its id")
	run.Flags().DurationVar(&flags.flushTimeout, "flush-timeout", 2*time.Second, "how long each execute call collects output")
	_ = run.MarkFlagRequired("image")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the agent's kernels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), &flags.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
				result, err := c.Invoke(ctx, rpcserver.MethodListKernels, nil, nil)
				if err != nil {
					return err
				}
				return printKernelList(cmd.OutOrStdout(), result)
			})
		},
	}

	exec := &cobra.Command{
		Use:   "exec KERNEL_ID CODE",
		Short: "Run CODE in a running kernel (query mode) and print its output",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), &flags.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
				sessionID, err := flags.sessionOf(ctx, c, args[0])
				if err != nil {
					return err
				}
				return flags.execute(ctx, cmd, c, sessionID, args[0], args[1])
			})
		},
	}
	exec.Flags().StringVar(&flags.sessionID, "session", "", "session id (default: looked up from the agent's kernel list)")
	exec.Flags().DurationVar(&flags.flushTimeout, "flush-timeout", 2*time.Second, "how long each execute call collects output")

	destroy := &cobra.Command{
		Use:   "destroy KERNEL_ID",
		Short: "Destroy a kernel",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), &flags.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
				sessionID, err := flags.sessionOf(ctx, c, args[0])
				if err != nil {
					return err
				}
				// With --session the kernel need not be here: the agent
				// then answers as upstream's does, reporting it to the
				// manager as already terminated.
				_, known, err := lookupKernel(ctx, c, args[0])
				if err != nil {
					return err
				}
				if _, err := c.Invoke(ctx, "destroy_kernel", []any{args[0], sessionID, flags.reason}, nil); err != nil {
					return err
				}
				if !known {
					fmt.Fprintf(cmd.OutOrStdout(), "kernel %s is not on this agent; the agent reported it as already terminated\n", args[0])
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "destroyed %s\n", args[0])
				return nil
			})
		},
	}
	destroy.Flags().StringVar(&flags.sessionID, "session", "", "session id (default: looked up from the agent's kernel list)")
	destroy.Flags().StringVar(&flags.reason, "reason", string(lifecycle.UserRequested), "termination reason")

	cmd.AddCommand(run, list, exec, destroy)
	return cmd
}

// newUUID returns a random (version 4) UUID in the dashed form.
func newUUID() (string, error) {
	var u wiremsg.UUID
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String(), nil
}

// slots builds resource_slots as the manager sends them (decimal strings).
func (f *kernelFlags) slots() (map[string]any, error) {
	cpu, err := decimal.NewFromString(f.cpu)
	if err != nil || !cpu.IsPositive() {
		return nil, fmt.Errorf("--cpu %q: want a positive number", f.cpu)
	}
	mem, err := config.ParseByteSize(f.mem)
	if err != nil || mem <= 0 {
		return nil, fmt.Errorf("--mem %q: want a positive binary size (e.g. 256m, 1g)", f.mem)
	}
	cuda, err := decimal.NewFromString(f.cuda)
	if err != nil || cuda.IsNegative() {
		return nil, fmt.Errorf("--cuda %q: want a number of GPUs", f.cuda)
	}
	slots := map[string]any{"cpu": cpu.String(), "mem": fmt.Sprint(int64(mem))}
	if cuda.IsPositive() {
		slots["cuda.device"] = cuda.String()
	}
	seen := map[string]bool{}
	for _, kv := range f.slotFlags {
		key, amount, err := parseSlotFlag(kv)
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("--slot %s is given twice", key)
		}
		seen[key] = true
		if amount.IsZero() {
			delete(slots, key) // as the manager: a zero slot is no request
			continue
		}
		slots[key] = amount.String()
	}
	return slots, nil
}

// parseSlotFlag reads --slot KEY=AMOUNT. AMOUNT is a decimal, or a binary
// size (4g, 512m) for bytes slots; the agent checks the key exists.
func parseSlotFlag(kv string) (string, decimal.Decimal, error) {
	key, value, ok := strings.Cut(kv, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if !ok || key == "" || value == "" {
		return "", decimal.Decimal{}, fmt.Errorf("--slot %q: want KEY=AMOUNT, e.g. cuda.shares=0.5", kv)
	}
	amount, err := decimal.NewFromString(value)
	if err != nil {
		size, sizeErr := config.ParseByteSize(value)
		if sizeErr != nil {
			return "", decimal.Decimal{}, fmt.Errorf("--slot %s=%s: want a number or a binary size (4g)", key, value)
		}
		amount = decimal.NewFromInt(int64(size))
	}
	if amount.IsNegative() {
		return "", decimal.Decimal{}, fmt.Errorf("--slot %s=%s: the amount is negative", key, value)
	}
	return key, amount, nil
}

// creationConfig is a KernelCreationConfig as the sokovan launcher builds
// it, with the enums as their plain values (the agent accepts both).
func (f *kernelFlags) creationConfig(kernelID, sessionID string, slots map[string]any) (map[string]any, error) {
	environ := map[string]any{
		"BACKENDAI_KERNEL_ID": kernelID, "BACKENDAI_SESSION_ID": sessionID, "BACKENDAI_KERNEL_IMAGE": f.image,
		"BACKENDAI_CLUSTER_ROLE": "main", "BACKENDAI_CLUSTER_IDX": "1", "BACKENDAI_CLUSTER_HOST": "main1",
		"BACKENDAI_CLUSTER_SIZE": "1", "BACKENDAI_CLUSTER_HOSTS": "main1", "BACKENDAI_CLUSTER_REPLICAS": "main:1",
	}
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		environ[k] = v
	}
	return map[string]any{
		"image": map[string]any{
			"canonical": f.image, "project": nil, "architecture": "", "digest": "", "repo_digest": nil,
			"registry": map[string]any{"name": "", "url": "", "username": nil, "password": nil},
			"labels":   map[string]any{}, "is_local": true, "auto_pull": sessionapi.AutoPullNone,
		},
		"kernel_id": kernelID, "session_id": sessionID, "owner_user_id": nil, "owner_project_id": nil,
		"network_id": sessionID, "session_type": f.sessionType, "cluster_mode": "single-node",
		"cluster_role": "main", "cluster_idx": int64(1), "cluster_hostname": "main1", "local_rank": int64(0),
		"uid": nil, "main_gid": nil, "supplementary_gids": []any{},
		"resource_slots": slots, "resource_opts": map[string]any{}, "environ": environ, "mounts": []any{},
		"package_directory": []any{}, "idle_timeout": int64(0), "bootstrap_script": nil, "startup_command": f.startupCommand,
		"internal_data": nil, "auto_pull": sessionapi.AutoPullNone, "preopen_ports": []any{},
		"allocated_host_ports": []any{}, "agent_addr": "", "scaling_group": "default", "endpoint_id": nil,
	}, nil
}

func (f *kernelFlags) run(cmd *cobra.Command, code string) error {
	slots, err := f.slots()
	if err != nil {
		return err
	}
	kernelID, err := newUUID()
	if err != nil {
		return err
	}
	sessionID, err := newUUID()
	if err != nil {
		return err
	}
	cfg, err := f.creationConfig(kernelID, sessionID, slots)
	if err != nil {
		return err
	}
	clusterInfo := map[string]any{"mode": "single-node", "size": int64(1), "replicas": map[string]any{"main": int64(1)},
		"network_config": map[string]any{}, "ssh_keypair": nil, "cluster_ssh_port_mapping": nil}
	return withClient(cmd.Context(), &f.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
		_, err := c.Invoke(ctx, "create_kernels",
			[]any{sessionID, []any{kernelID}, []any{cfg}, clusterInfo, map[string]any{}}, nil)
		if err != nil {
			return fmt.Errorf("create_kernels: %w", err)
		}
		execErr := f.execute(ctx, cmd, c, sessionID, kernelID, code)
		if f.keep {
			fmt.Fprintf(cmd.ErrOrStderr(), "kernel %s (session %s) left running\n", kernelID, sessionID)
			return execErr
		}
		if _, err := c.Invoke(context.WithoutCancel(ctx), "destroy_kernel", []any{kernelID, sessionID, string(lifecycle.UserRequested)}, nil); err != nil {
			return errors.Join(execErr, fmt.Errorf("destroy_kernel %s: %w", kernelID, err))
		}
		return execErr
	})
}

// runBatch creates a batch session's kernel and triggers its job as the
// manager does when the session goes RUNNING
// (manager/sokovan/scheduler/hooks/status.py).
func (f *kernelFlags) runBatch(cmd *cobra.Command) error {
	kernelID, sessionID, cfg, clusterInfo, err := f.newKernel()
	if err != nil {
		return err
	}
	return withClient(cmd.Context(), &f.rpcFlags, func(ctx context.Context, c *callosum.Client) error {
		if _, err := c.Invoke(ctx, "create_kernels",
			[]any{sessionID, []any{kernelID}, []any{cfg}, clusterInfo, map[string]any{}}, nil); err != nil {
			return fmt.Errorf("create_kernels: %w", err)
		}
		var timeout any // None: no bound
		if f.batchTimeout > 0 {
			timeout = f.batchTimeout.Seconds()
		}
		if _, err := c.Invoke(ctx, "trigger_batch_execution", []any{sessionID, kernelID, f.startupCommand, timeout}, nil); err != nil {
			return fmt.Errorf("trigger_batch_execution: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "kernel %s (session %s) left running; batch job triggered, its result goes to the manager\n", kernelID, sessionID)
		return nil
	})
}

// newKernel makes the ids and the create_kernels arguments of one kernel.
func (f *kernelFlags) newKernel() (kernelID, sessionID string, cfg, clusterInfo map[string]any, err error) {
	slots, err := f.slots()
	if err != nil {
		return "", "", nil, nil, err
	}
	if kernelID, err = newUUID(); err != nil {
		return "", "", nil, nil, err
	}
	if sessionID, err = newUUID(); err != nil {
		return "", "", nil, nil, err
	}
	if cfg, err = f.creationConfig(kernelID, sessionID, slots); err != nil {
		return "", "", nil, nil, err
	}
	clusterInfo = map[string]any{"mode": "single-node", "size": int64(1), "replicas": map[string]any{"main": int64(1)},
		"network_config": map[string]any{}, "ssh_keypair": nil, "cluster_ssh_port_mapping": nil}
	return kernelID, sessionID, cfg, clusterInfo, nil
}

// ExitError reports a non-zero exit code of the code a kernel ran.
type ExitError struct{ Code int64 }

func (e *ExitError) Error() string { return fmt.Sprintf("the code exited with status %d", e.Code) }

// execute runs code in query mode, continuing while the kernel answers
// "continued" and feeding lines of stdin when it waits for input.
func (f *kernelFlags) execute(ctx context.Context, cmd *cobra.Command, c *callosum.Client, sessionID, kernelID, code string) error {
	runID, err := newUUID()
	if err != nil {
		return err
	}
	runID = strings.ReplaceAll(runID, "-", "")[:16]
	stdin := bufio.NewReader(cmd.InOrStdin())
	mode := "query"
	for {
		result, err := c.Invoke(ctx, "execute",
			[]any{sessionID, kernelID, int64(4), runID, mode, code, map[string]any{}, f.flushTimeout.Seconds()}, nil)
		if err != nil {
			return fmt.Errorf("execute: %w", err)
		}
		res, ok := result.(wiremsg.Map)
		if !ok {
			return fmt.Errorf("execute returned %T", result)
		}
		printConsole(cmd.OutOrStdout(), cmd.ErrOrStderr(), res["console"])
		status, _ := res["status"].(string)
		switch status {
		case "continued":
			mode, code = "continue", ""
		case "waiting-input":
			line, err := stdin.ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("the code waits for input and stdin is closed: %w", err)
			}
			mode, code = "input", strings.TrimSuffix(line, "\n")
		case "finished", "build-finished", "clean-finished":
			if n, ok := res["exitCode"].(int64); ok && n != 0 {
				return &ExitError{Code: n}
			}
			return nil
		default:
			return fmt.Errorf("execute ended with status %q", status)
		}
	}
}

func printConsole(stdout, stderr io.Writer, console any) {
	items, _ := console.([]any)
	for _, item := range items {
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			continue
		}
		typ, _ := pair[0].(string)
		var data string
		switch d := pair[1].(type) {
		case string:
			data = d
		case []byte:
			data = string(d)
		default:
			data = fmt.Sprint(d)
		}
		switch typ {
		case "stdout":
			fmt.Fprint(stdout, data)
		case "stderr":
			fmt.Fprint(stderr, data)
		default:
			fmt.Fprintf(stderr, "[%s] %s\n", typ, data)
		}
	}
}

// kernelList reads baiagent_list_kernels' answer.
func kernelList(result any) []wiremsg.Map {
	items, _ := result.([]any)
	out := make([]wiremsg.Map, 0, len(items))
	for _, item := range items {
		if m, ok := item.(wiremsg.Map); ok {
			out = append(out, m)
		}
	}
	return out
}

// sessionOf is --session, or the session of kernelID in the agent's list.
func (f *kernelFlags) sessionOf(ctx context.Context, c *callosum.Client, kernelID string) (string, error) {
	if f.sessionID != "" {
		return f.sessionID, nil
	}
	sid, found, err := lookupKernel(ctx, c, kernelID)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("kernel %s is not on this agent", kernelID)
	}
	return sid, nil
}

// lookupKernel finds a kernel in the agent's kernel list and returns its
// session.
func lookupKernel(ctx context.Context, c *callosum.Client, kernelID string) (sessionID string, found bool, err error) {
	result, err := c.Invoke(ctx, rpcserver.MethodListKernels, nil, nil)
	if err != nil {
		return "", false, fmt.Errorf("look up the session of %s: %w", kernelID, err)
	}
	want := kernelID
	if u, err := wiremsg.ParseUUID(kernelID); err == nil {
		want = u.String()
	}
	for _, k := range kernelList(result) {
		if k["id"] == want {
			sid, _ := k["session_id"].(string)
			return sid, true, nil
		}
	}
	return "", false, nil
}

func printKernelList(w io.Writer, result any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL ID\tSESSION ID\tSTATE\tIMAGE\tCONTAINER\tREPL PORTS\tCREATED")
	for _, k := range kernelList(result) {
		cid, _ := k["container_id"].(string)
		if len(cid) > 12 {
			cid = cid[:12]
		}
		fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%s\t%v/%v\t%v\n", k["id"], k["session_id"], k["state"], k["image"], cid,
			k["repl_in_port"], k["repl_out_port"], k["created_at"])
	}
	return tw.Flush()
}
