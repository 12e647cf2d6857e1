// Package cli defines the baiagent command line. Each command is a thin
// layer over the packages the daemon itself runs.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/baiagent/baiagent/host/internal/agent"
	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/logging"
	"github.com/baiagent/baiagent/host/internal/version"
)

type options struct {
	configPath string
	logLevel   string
	env        config.Env
}

// NewRootCommand builds the command tree. env describes the process (the
// environment overrides, working and home directories), so tests can run
// commands hermetically.
func NewRootCommand(env config.Env) *cobra.Command {
	opts := &options{env: env}
	root := &cobra.Command{
		Use:   "baiagent",
		Short: "Backend.AI compute-node agent",
		Long: `baiagent runs Backend.AI kernels (user sessions) as Docker containers on this
node, serves the manager's RPC, and loads accelerator plugins (cpu, cuda, rocm,
tpu, vendors' own) as separate processes from its plugin directories.

Configuration comes from agent.toml: the file given with -f, else the first of
./agent.toml, ~/.config/backend.ai/agent.toml and /etc/backend.ai/agent.toml
($BACKEND_CONFIG_FILE overrides the search). BACKEND_* environment variables
override single keys, as with the Python agent.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&opts.configPath, "config", "f", "", "path of agent.toml (default: search as described above)")
	root.PersistentFlags().StringVar(&opts.logLevel, "log-level", "", "override [logging] level: debug, info, warning, error")
	root.AddCommand(newServerCommand(opts), newPluginsCommand(opts), newConfigCommand(opts), newVersionCommand())
	root.AddCommand(newRPCCommand(opts))
	root.AddCommand(newKernelCommand(opts))
	root.AddCommand(newWatcherCommand(opts))
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(config.SystemEnv())
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "baiagent:", err)
		return 1
	}
	return 0
}

// load reads the configuration and reports accepted-but-unused keys.
func (o *options) load(stderr io.Writer) (*config.Config, error) {
	cfg, warnings, err := config.Load(o.configPath, o.env)
	// Warnings come also with a refusal: a misspelt section ("[agnet]") is
	// reported as missing, and only its warning points at the typo.
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func (o *options) logger(cfg *config.Config, stderr io.Writer) (zerolog.Logger, error) {
	level := cfg.Logging.Level.Zerolog()
	if o.logLevel != "" {
		l, err := zerolog.ParseLevel(normalizeLevel(o.logLevel))
		if err != nil {
			return zerolog.Logger{}, fmt.Errorf("--log-level: %w", err)
		}
		level = l
	}
	return logging.New(stderr, level, logging.Format(cfg.Logging.Format)), nil
}

func normalizeLevel(l string) string {
	if l == "warning" {
		return "warn"
	}
	return l
}

func newServerCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "server",
		Short: "Run the agent until SIGINT or SIGTERM",
		Long: `Run the agent: launch the compute plugins and serve until SIGINT or SIGTERM.
Stopping the agent never stops running kernels.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			log, err := opts.logger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			applyGCPercent(opts.env, log)
			removePID, err := agent.WritePIDFile(cfg.Agent.PIDFile)
			if err != nil {
				return err
			}
			defer func() {
				if err := removePID(); err != nil {
					log.Warn().Err(err).Msg("pid file not removed")
				}
			}()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return agent.New(cfg, log).Run(ctx)
		},
	}
}

func newConfigCommand(opts *options) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect agent.toml"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate agent.toml and print the effective configuration",
		Long: `Validate agent.toml (after BACKEND_* overrides) and print the effective
configuration with every default filled in and secrets masked. Exits 1 and
names each bad key when the file is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.load(cmd.ErrOrStderr())
			if err != nil {
				var verr *config.ValidationError
				if errors.As(err, &verr) {
					return fmt.Errorf("invalid configuration:\n%w", err)
				}
				return err
			}
			out, err := cfg.EffectiveTOML()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# effective configuration of %s\n", cfg.SourcePath)
			if _, err := cmd.OutOrStdout().Write(out); err != nil {
				return err
			}
			// What scratch-size will do on this host's scratch root; a
			// comment, so the output stays valid TOML.
			if ct := cfg.Container; ct.ScratchSize > 0 {
				limit := scratch.PlanSizeLimit(scratch.Kind(ct.ScratchType), ct.ScratchRoot, int64(ct.ScratchSize))
				fmt.Fprintf(cmd.OutOrStdout(), "# container.scratch-size: %s\n", limit.Detail)
			}
			return nil
		},
	})
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version, commit, Go version and plugin API version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v := version.Get()
			fmt.Fprintf(cmd.OutOrStdout(), "baiagent %s\ncommit: %s\ngo: %s\nplugin API: %s\n",
				v.Version, v.Commit, v.GoVersion, v.PluginAPIVersion)
		},
	}
}

// signalContext is split out so tests can drive commands with their own ctx.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
