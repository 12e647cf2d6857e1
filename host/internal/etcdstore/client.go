// Package etcdstore talks to the Backend.AI cluster's etcd the way upstream's
// agent does (common/etcd.py, agent/server.py): keys under /sorna/{namespace}/,
// a global and a per-node scope, nested dicts stored as quoted, flattened keys.
// It also runs an embedded single-node etcd for clusters of one.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/zaplog"
)

// Scope selects which scope prefix a key lives under.
type Scope int

const (
	// ScopeMerged reads the node scope first, then the global one (upstream's
	// MERGED). Writes never use it.
	ScopeMerged Scope = iota
	// ScopeGlobal is the cluster-wide scope: no prefix.
	ScopeGlobal
	// ScopeNode is this agent's scope: nodes/agents/{agent-id}.
	ScopeNode
)

func (s Scope) String() string {
	switch s {
	case ScopeMerged:
		return "merged"
	case ScopeGlobal:
		return "global"
	case ScopeNode:
		return "node"
	default:
		return "scope(" + strconv.Itoa(int(s)) + ")"
	}
}

// ErrMergedWrite is returned when a write names ScopeMerged.
var ErrMergedWrite = errors.New("etcdstore: writes need the global or node scope, not merged")

// Options say how to reach etcd and which namespace and node this agent is.
type Options struct {
	Endpoints []string
	Namespace string
	AgentID   string
	// Username and Password enable etcd authentication when both are set,
	// as upstream only sends credentials when both are non-empty.
	Username string
	Password string
	// DialTimeout bounds the first connection; 0 means 5 s.
	DialTimeout time.Duration
	Log         zerolog.Logger
}

// OptionsFromConfig builds client options from agent.toml's [etcd] and the
// agent ID.
func OptionsFromConfig(cfg *config.Config, log zerolog.Logger) Options {
	endpoints := make([]string, 0, len(cfg.Etcd.Addrs))
	for _, addr := range cfg.Etcd.Addrs {
		endpoints = append(endpoints, addr.DialAddr())
	}
	return Options{
		Endpoints: endpoints,
		Namespace: cfg.Etcd.Namespace,
		AgentID:   cfg.Agent.ID,
		Username:  cfg.Etcd.User,
		Password:  cfg.Etcd.Password,
		Log:       log,
	}
}

// Client is an etcd client bound to one namespace and one agent's node scope.
type Client struct {
	etcd       *clientv3.Client
	namespace  string
	nodePrefix string
	log        zerolog.Logger
}

// Connect dials etcd and checks that it answers (and accepts the
// credentials) before returning, so a wrong address fails here, not on the
// first write.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no etcd endpoints configured")
	}
	if opts.Namespace == "" {
		return nil, errors.New("etcdstore: etcd namespace is empty")
	}
	if opts.AgentID == "" {
		return nil, errors.New("etcdstore: agent ID is empty")
	}
	dialTimeout := opts.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = 5 * time.Second
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: dialTimeout,
		Context:     context.WithoutCancel(ctx),
		Logger:      zaplog.New(opts.Log.With().Str("component", "etcd-client").Logger(), nil),
	}
	if opts.Username != "" && opts.Password != "" {
		cfg.Username, cfg.Password = opts.Username, opts.Password
	}
	etcd, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: connect to %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	c := &Client{
		etcd:       etcd,
		namespace:  opts.Namespace,
		nodePrefix: "nodes/agents/" + opts.AgentID,
		log:        opts.Log,
	}
	pingCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := c.Ping(pingCtx); err != nil {
		_ = etcd.Close()
		return nil, fmt.Errorf("etcdstore: etcd at %s does not answer: %w", strings.Join(opts.Endpoints, ","), err)
	}
	c.log.Info().Strs("endpoints", opts.Endpoints).Str("namespace", opts.Namespace).Msg("using etcd")
	return c, nil
}

// Close releases the connection.
func (c *Client) Close() error {
	return c.etcd.Close()
}

// Ping reads one key, as upstream's health check does; it succeeds when etcd
// answers, whether or not the key exists.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.etcd.Get(ctx, c.mangle("_"), clientv3.WithCountOnly())
	return err
}

// Namespace returns the namespace the client was opened with.
func (c *Client) Namespace() string { return c.namespace }

// mangle prefixes a scoped key with /sorna/{namespace}/ after dropping one
// leading "/" (upstream's _mangle_key).
func (c *Client) mangle(key string) string {
	return "/sorna/" + c.namespace + "/" + strings.TrimPrefix(key, "/")
}

// slash is upstream's _slash: a non-empty scope prefix gets exactly one
// trailing "/", the empty (global) one stays empty.
func slash(prefix string) string {
	if prefix == "" {
		return ""
	}
	return strings.TrimRight(prefix, "/") + "/"
}

func (c *Client) scopePrefix(scope Scope) (string, error) {
	switch scope {
	case ScopeGlobal:
		return "", nil
	case ScopeNode:
		return c.nodePrefix, nil
	default:
		return "", ErrMergedWrite
	}
}

// readPrefixes lists the scope prefixes a read looks in, first match wins.
// Upstream reads the node scope for both MERGED and NODE, falling back to
// global.
func (c *Client) readPrefixes(scope Scope) []string {
	if scope == ScopeGlobal {
		return []string{""}
	}
	return []string{c.nodePrefix, ""}
}

// Key returns the full etcd key for key in a write scope, exactly as
// upstream builds it. Keys are not quoted: callers quote components as
// upstream's callers do. The node status key (key "") ends with "/".
func (c *Client) Key(scope Scope, key string) (string, error) {
	prefix, err := c.scopePrefix(scope)
	if err != nil {
		return "", err
	}
	return c.mangle(slash(prefix) + key), nil
}

// Put writes one value.
func (c *Client) Put(ctx context.Context, scope Scope, key, value string) error {
	full, err := c.Key(scope, key)
	if err != nil {
		return err
	}
	if _, err := c.etcd.Put(ctx, full, value); err != nil {
		return fmt.Errorf("etcdstore: put %s: %w", full, err)
	}
	return nil
}

// PutPrefix writes a nested dict under key in one transaction, quoting each
// dict key (upstream's put_prefix).
func (c *Client) PutPrefix(ctx context.Context, scope Scope, key string, tree map[string]any) error {
	prefix, err := c.scopePrefix(scope)
	if err != nil {
		return err
	}
	flat := Flatten(key, tree)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]clientv3.Op, 0, len(flat))
	for _, k := range keys {
		ops = append(ops, clientv3.OpPut(c.mangle(slash(prefix)+k), flat[k]))
	}
	if _, err := c.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("etcdstore: put prefix %s: %w", c.mangle(slash(prefix)+key), err)
	}
	return nil
}

// Get reads one value; found is false when no scope has the key.
func (c *Client) Get(ctx context.Context, scope Scope, key string) (value string, found bool, err error) {
	for _, prefix := range c.readPrefixes(scope) {
		full := c.mangle(slash(prefix) + key)
		resp, err := c.etcd.Get(ctx, full)
		if err != nil {
			return "", false, fmt.Errorf("etcdstore: get %s: %w", full, err)
		}
		if len(resp.Kvs) > 0 {
			return string(resp.Kvs[0].Value), true, nil
		}
	}
	return "", false, nil
}

// Delete removes one key.
func (c *Client) Delete(ctx context.Context, scope Scope, key string) error {
	full, err := c.Key(scope, key)
	if err != nil {
		return err
	}
	if _, err := c.etcd.Delete(ctx, full); err != nil {
		return fmt.Errorf("etcdstore: delete %s: %w", full, err)
	}
	return nil
}

// scopedDict is one scope's part of a prefix read.
type scopedDict struct {
	// keyBase is the full etcd key the dict's top-level names hang under,
	// used to name a bad value's key in errors.
	keyBase string
	dict    map[string]any
}

// prefixRead is a merged prefix read that remembers where each top-level
// entry came from.
type prefixRead struct {
	scopes []scopedDict
}

// lookup returns the entry for a top-level name from the first scope that
// has it (upstream's ChainMap), and the full key it lives at.
func (r prefixRead) lookup(name string) (value any, key string, found bool) {
	for _, s := range r.scopes {
		if v, ok := s.dict[name]; ok {
			return v, joinKey(s.keyBase, name), true
		}
	}
	return nil, "", false
}

// merged flattens the chain into one map: each top-level name comes whole
// from the first scope that has it.
func (r prefixRead) merged() map[string]any {
	out := map[string]any{}
	for i := len(r.scopes) - 1; i >= 0; i-- {
		for name, v := range r.scopes[i].dict {
			out[name] = v
		}
	}
	return out
}

func joinKey(base, name string) string {
	if name == "" {
		return base
	}
	return base + "/" + Quote(name)
}

// GetPrefix reads every key under keyPrefix as a nested dict (see
// MakeDictFromPairs). With ScopeMerged the node scope shadows the global one
// per top-level name, as upstream's ChainMap does: a name present in the node
// scope hides the global subtree of the same name entirely.
func (c *Client) GetPrefix(ctx context.Context, scope Scope, keyPrefix string) (map[string]any, error) {
	read, err := c.getPrefix(ctx, scope, keyPrefix)
	if err != nil {
		return nil, err
	}
	return read.merged(), nil
}

func (c *Client) getPrefix(ctx context.Context, scope Scope, keyPrefix string) (prefixRead, error) {
	var read prefixRead
	for _, prefix := range c.readPrefixes(scope) {
		scoped := slash(prefix) + keyPrefix
		full := c.mangle(scoped)
		// Upstream matches the raw prefix without a trailing "/", so
		// "config/redis" also sees "config/redis2/..."; we do the same.
		resp, err := c.etcd.Get(ctx, full, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return prefixRead{}, fmt.Errorf("etcdstore: get prefix %s: %w", full, err)
		}
		pairs := make([]Pair, 0, len(resp.Kvs))
		nsPrefix := c.mangle("")
		for _, kv := range resp.Kvs {
			pairs = append(pairs, Pair{Key: strings.TrimPrefix(string(kv.Key), nsPrefix), Value: string(kv.Value)})
		}
		read.scopes = append(read.scopes, scopedDict{keyBase: full, dict: MakeDictFromPairs(scoped, pairs)})
	}
	return read, nil
}

// leafString renders a leaf value as upstream's str(v) would for the types a
// TOML or JSON config holds.
func leafString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	default:
		return fmt.Sprint(v)
	}
}

func clientv3CountOnly() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithCountOnly()}
}
