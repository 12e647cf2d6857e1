// Package etcdserver runs a single-node etcd member in the calling process:
// the agent's embedded etcd, which the baiagent-etcd executable serves (the
// agent starts that as its child, see etcdproc, so that etcd's server code
// is not linked into the agent), and tests' in-process etcd.
package etcdserver

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
	"github.com/baiagent/baiagent/host/internal/zaplog"
)

// DefaultReadyTimeout bounds how long Start waits for the member to be
// ready to serve.
const DefaultReadyTimeout = 30 * time.Second

// Server is a single-node etcd member running in this process.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
	log       zerolog.Logger
	closing   *atomic.Bool // tells etcd's log adapter that errors of closed listeners are expected
}

// Start starts a single-node etcd with its data under dataDir, serving
// clients at listen (agent.toml's etcd.addr) and peers on a free loopback
// port, and waits until it serves or ctx ends (with DefaultReadyTimeout as
// an upper bound). etcd's own logs go to log at warning level and above.
func Start(ctx context.Context, dataDir string, listen config.HostPort, log zerolog.Logger) (*Server, error) {
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
	clientAdvertise := url.URL{Scheme: "http", Host: listen.DialAddr()}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls = []url.URL{clientListen}
	cfg.AdvertiseClientUrls = []url.URL{clientAdvertise}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	closing := &atomic.Bool{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaplog.New(log, closing))
	applyIdleSettings(cfg)

	started := time.Now()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded etcd: an address is already in use (client %s, peer %s): %w", listen, peer.Host, err)
		}
		return nil, fmt.Errorf("embedded etcd: start in %s: %w", dataDir, err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, DefaultReadyTimeout)
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
	return &Server{etcd: e, clientURL: clientAdvertise.String(), log: log, closing: closing}, nil
}

// Settings of the agent's own single member that keep an idle agent from
// waking often (issue 20: embedded etcd within 2x the CPU of an agent with
// an external one). Every wakeup of an etcd loop is a wakeup of the agent's
// process. Read from go.etcd.io/etcd/server/v3 v3.7.3; see applyIdleSettings
// for what each does and for the loops no setting reaches.
const (
	embeddedTickMs     = 150
	embeddedElectionMs = 5 * embeddedTickMs
	embeddedBatch      = time.Second
)

// applyIdleSettings sets what cfg needs for an idle agent to stay quiet. It
// sets nothing that weakens durability: every write is still in the WAL,
// fsynced, before it is acknowledged (cfg.UnsafeNoFsync stays false).
//
// What still wakes an idle agent with these settings, and cannot be set
// (etcd server v3.7.3): the watchable store's sync loop every 100 ms
// (storage/mvcc/watchable_store.go, watchResyncPeriod), the lessor's loop
// every 500 ms (lease/lessor.go, runLoop), the cluster and storage version
// monitors every 4 s each (etcdserver/server.go, monitorVersionInterval),
// the WAL and snapshot purgers every 30 s (etcdserver/server.go,
// purgeFileInterval; turning them off would let WAL files pile up).
func applyIdleSettings(cfg *embed.Config) {
	// Raft wakes two goroutines on every tick (etcdserver/raft.go's
	// raftNode.start and raft's node.run), though a lone member has no
	// peer to send heartbeats to: 10 ms ticks cost an idle agent more than
	// everything else it does. The election timeout is the shortest etcd
	// accepts (5 ticks, embed.Config.Validate), because a single member
	// starts by fast-forwarding all but one of its election ticks
	// (EtcdServer.adjustTicks) and then waits the rest of raft's randomized
	// timeout: 1 to 5 ticks, so start-up waits 150-750 ms for the election
	// (100-500 ms at 100 ms ticks; 200 ms ticks would reach a second). The
	// gRPC server's leader monitor (etcdserver/api/v3rpc/interceptor.go,
	// monitorLeader) wakes once per election timeout too.
	cfg.TickMs = embeddedTickMs
	cfg.ElectionMs = embeddedElectionMs
	// The backend commits its write batch on a timer (100 ms by default)
	// that wakes even when nothing was written (storage/backend/backend.go,
	// run). Every write is in the WAL, fsynced, before it is acknowledged,
	// so a longer batch loses nothing on a crash: the WAL is replayed.
	cfg.BackendBatchInterval = embeddedBatch
	// The downgrade monitor wakes every 5 s to cancel a finished downgrade
	// (etcdserver/server.go, monitorDowngrade; 0 turns it off). A
	// downgrade is an operator's cluster procedure (etcdctl downgrade
	// enable); nobody downgrades the agent's private member in place.
	cfg.DowngradeCheckTime = 0
	// Left at etcd's defaults, since they do not wake an idle agent:
	// the gRPC server pings a client only after 2 h of silence
	// (GRPCKeepAliveInterval), the agent's own client sets no keepalive,
	// corruption and compact-hash checks are off (CorruptCheckTime 0,
	// feature gate CompactHashCheck off), auto-compaction is off, and
	// metrics are only computed when scraped.
}

// ClientURL is the URL clients dial.
func (e *Server) ClientURL() string { return e.clientURL }

// Endpoint is the host:port clients dial.
func (e *Server) Endpoint() string {
	u, _ := url.Parse(e.clientURL)
	return u.Host
}

// Failed delivers the error that ended serving, if serving ends before
// Close.
func (e *Server) Failed() <-chan error { return e.etcd.Err() }

// Close stops the member and releases its ports and data dir lock.
func (e *Server) Close() {
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
