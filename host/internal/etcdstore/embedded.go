package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/baiagent/baiagent/host/internal/config"
)

// DefaultEmbeddedReadyTimeout bounds how long StartEmbedded waits for the
// member to be ready to serve.
const DefaultEmbeddedReadyTimeout = 30 * time.Second

// Embedded is a single-node etcd running inside the agent process.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
	log       zerolog.Logger
	closing   *atomic.Bool // tells etcd's log adapter that errors of closed listeners are expected
}

// StartEmbedded starts a single-node etcd with its data under dataDir,
// serving clients at listen (agent.toml's etcd.addr) and peers on a free
// loopback port, and waits until it serves or ctx ends (with
// DefaultEmbeddedReadyTimeout as an upper bound). etcd's own logs go to log
// at warning level and above.
func StartEmbedded(ctx context.Context, dataDir string, listen config.HostPort, log zerolog.Logger) (*Embedded, error) {
	log = log.With().Str("component", "embedded-etcd").Logger()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: create data dir: %w", err)
	}
	// A taken client port would otherwise surface as a generic serve error
	// after etcd has already opened its data dir; say it plainly up front.
	if err := checkPortFree(listen); err != nil {
		return nil, err
	}
	peerPort, err := freeLoopbackPort()
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: pick a peer port: %w", err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "baiagent"
	cfg.Dir = dataDir
	clientListen := url.URL{Scheme: "http", Host: listen.String()}
	clientAdvertise := url.URL{Scheme: "http", Host: dialAddr(listen)}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls = []url.URL{clientListen}
	cfg.AdvertiseClientUrls = []url.URL{clientAdvertise}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	closing := &atomic.Bool{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log, closing))
	// A lone member has no peer to send heartbeats to, yet raft wakes on
	// every tick: 10 ms ticks cost an idle agent more CPU than everything
	// else it does. etcd's own 100 ms tick with the shortest election it
	// accepts (5 ticks) keeps the start-up election under half a second: a
	// single member fast-forwards to its last election tick.
	cfg.TickMs = 100
	cfg.ElectionMs = 500
	// The backend commits its write batch on a timer (100 ms by default)
	// that wakes even when nothing was written. Every write is in the WAL,
	// fsynced, before it is acknowledged, so a longer batch loses nothing.
	cfg.BackendBatchInterval = time.Second

	started := time.Now()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded etcd: an address is already in use (client %s, peer %s): %w", listen, peer.Host, err)
		}
		return nil, fmt.Errorf("embedded etcd: start in %s: %w", dataDir, err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, DefaultEmbeddedReadyTimeout)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd: failed while starting: %w", err)
	case <-readyCtx.Done():
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready at %s after %s: %w", listen, time.Since(started).Round(time.Millisecond), readyCtx.Err())
	}
	log.Info().Str("client_url", clientAdvertise.String()).Str("data_dir", dataDir).
		Dur("startup", time.Since(started)).Msg("embedded etcd ready")
	return &Embedded{etcd: e, clientURL: clientAdvertise.String(), log: log, closing: closing}, nil
}

// ClientURL is the URL clients dial.
func (e *Embedded) ClientURL() string { return e.clientURL }

// Endpoint is the host:port clients dial.
func (e *Embedded) Endpoint() string {
	u, _ := url.Parse(e.clientURL)
	return u.Host
}

// Close stops the member and releases its ports and data dir lock.
func (e *Embedded) Close() {
	e.closing.Store(true)
	e.etcd.Close()
	e.log.Info().Msg("embedded etcd stopped")
}

func checkPortFree(listen config.HostPort) error {
	l, err := net.Listen("tcp", listen.String())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("embedded etcd: client address %s is already in use (is another etcd or agent running? set etcd.addr to a free port, or point etcd.embedded=false at the running etcd): %w", listen, err)
		}
		return fmt.Errorf("embedded etcd: cannot listen on %s: %w", listen, err)
	}
	return l.Close()
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
