package watcher

import (
	"context"
	"sync"
	"time"

	"github.com/baiagent/baiagent/host/internal/etcdstore"
)

// EtcdStore reads the watcher's keys from etcd's global scope. It connects
// on first use and again after a failed connection, so the watcher can
// start (and answer 503) while etcd is still down.
type EtcdStore struct {
	opts etcdstore.Options

	mu     sync.Mutex
	client *etcdstore.Client
}

// NewEtcdStore prepares a store; nothing is dialled yet.
func NewEtcdStore(opts etcdstore.Options) *EtcdStore {
	return &EtcdStore{opts: opts}
}

func (s *EtcdStore) connected(ctx context.Context) (*etcdstore.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	opts := s.opts
	if deadline, ok := ctx.Deadline(); ok {
		if d := time.Until(deadline); d > 0 && (opts.DialTimeout == 0 || d < opts.DialTimeout) {
			opts.DialTimeout = d
		}
	}
	client, err := etcdstore.Connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.client = client
	return client, nil
}

// Get reads key from the global scope.
func (s *EtcdStore) Get(ctx context.Context, key string) (string, bool, error) {
	client, err := s.connected(ctx)
	if err != nil {
		return "", false, err
	}
	return client.Get(ctx, etcdstore.ScopeGlobal, key)
}

// Close drops the connection, if any.
func (s *EtcdStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Close()
	s.client = nil
	return err
}
