package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/etcdstore"
	"github.com/baiagent/baiagent/host/internal/watcher"
)

// newWatcherSystem is the host the watcher acts on; tests replace it.
var newWatcherSystem = func() watcher.System { return watcher.OSSystem{} }

func newWatcherCommand(opts *options) *cobra.Command {
	var debug bool
	cmd := &cobra.Command{
		Use:   "watcher",
		Short: "Run the watcher: the root HTTP service that controls the agent's unit and mounts volumes",
		Long: `Run the agent watcher (upstream's "python -m ai.backend.agent.watcher") until
SIGINT or SIGTERM. It serves [watcher] service-addr (default 0.0.0.0:6009),
over HTTPS when ssl-enabled (ssl-cert, and ssl-key or ssl-privkey). Every
request must carry X-BackendAI-Watcher-Token equal to etcd's
config/watcher/token ("insecure" when unset). It reports and controls the
systemd unit [watcher] target-service, restarts Docker, powers the node off,
and mounts volumes under etcd's volumes/_mount. Run it as root.`,
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
			if debug && opts.logLevel == "" {
				log = log.Level(zerolog.DebugLevel)
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return runWatcher(ctx, cfg, log, newWatcherSystem())
		},
	}
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level (unless --log-level says otherwise)")
	return cmd
}

// WatcherTokenCacheFile is the watcher's token cache under var-base-path.
const WatcherTokenCacheFile = "watcher-token"

// runWatcher serves the watcher API until ctx ends.
func runWatcher(ctx context.Context, cfg *config.Config, log zerolog.Logger, sys watcher.System) error {
	w := cfg.Watcher
	var tlsConfig *tls.Config
	if w.SSLEnabled {
		var err error
		if tlsConfig, err = watcher.LoadTLS(watcher.TLSFiles{Cert: w.SSLCert, Key: w.SSLKey}); err != nil {
			return err
		}
	}
	// The agent owns an embedded etcd, so that etcd is down whenever the
	// agent is: the token cached at the last successful read keeps the
	// watcher able to start the agent then.
	tokenCache := filepath.Join(cfg.Agent.VarBasePath, WatcherTokenCacheFile)
	if cfg.Etcd.Embedded {
		log.Info().Str("token_cache", tokenCache).Msg("etcd is embedded in the agent: while it is down the watcher uses the token cached at its last read")
	}
	store := watcher.NewEtcdStore(etcdstore.OptionsFromConfig(cfg, log))
	defer store.Close()
	srv := watcher.New(watcher.Options{
		TargetService:      w.TargetService,
		SoftResetAvailable: w.SoftResetAvailable,
		Store:              store,
		System:             sys,
		Log:                log,
		TokenCacheFile:     tokenCache,
	})
	if err := srv.RefreshToken(ctx); err != nil {
		log.Warn().Err(err).Msg("cannot read the watcher token yet; answering 503 and retrying on each request")
	}
	ln, err := net.Listen("tcp", w.ServiceAddr.String())
	if err != nil {
		return fmt.Errorf("watcher.service-addr: %w", err)
	}
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", tlsConfig != nil).Str("target_service", w.TargetService).
		Bool("soft_reset_available", w.SoftResetAvailable).Msg("watcher started")
	err = srv.Serve(ctx, ln, tlsConfig)
	srv.Wait() // a requested power-off still happens
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info().Msg("watcher stopped")
	return nil
}
