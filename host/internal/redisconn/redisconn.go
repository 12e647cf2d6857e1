// Package redisconn says where each Redis role lives and opens clients for
// it: a plain server or a sentinel-watched master, with a password and TLS.
// It mirrors upstream's RedisProfileTarget (common/types.py) and the roles
// and databases of common/defs/__init__.py.
package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Role names a use of Redis, as upstream's RedisRole does; an
// override_configs entry under this name redirects that use.
type Role string

// Upstream's roles (common/defs/__init__.py RedisRole).
const (
	RoleStatistics   Role = "statistics"
	RoleRateLimit    Role = "rate_limit"
	RoleLive         Role = "live"
	RoleImage        Role = "image"
	RoleStream       Role = "stream"
	RoleStreamLock   Role = "stream_lock"
	RoleContainerLog Role = "container_log"
	RoleBgtask       Role = "bgtask"
	RoleTUS          Role = "tus"
)

// Roles lists every upstream role, in upstream's order.
func Roles() []Role {
	return []Role{RoleStatistics, RoleRateLimit, RoleLive, RoleImage, RoleStream,
		RoleStreamLock, RoleContainerLog, RoleBgtask, RoleTUS}
}

// Known says whether r is one of upstream's roles; an override under any
// other name is never read.
func (r Role) Known() bool {
	for _, known := range Roles() {
		if r == known {
			return true
		}
	}
	return false
}

// Upstream's logical databases per role (common/defs/__init__.py REDIS_*_DB).
const (
	DBStatistics   = 0
	DBRateLimit    = 1
	DBLive         = 2
	DBImage        = 3
	DBStream       = 4
	DBStreamLock   = 5
	DBContainerLog = 6
	DBBgtask       = 7
	DBTUS          = 8
)

// DB is the logical database upstream keeps r's data in (REDIS_*_DB).
func (r Role) DB() int {
	switch r {
	case RoleStatistics:
		return DBStatistics
	case RoleRateLimit:
		return DBRateLimit
	case RoleLive:
		return DBLive
	case RoleImage:
		return DBImage
	case RoleStream:
		return DBStream
	case RoleStreamLock:
		return DBStreamLock
	case RoleContainerLog:
		return DBContainerLog
	case RoleBgtask:
		return DBBgtask
	case RoleTUS:
		return DBTUS
	}
	return 0
}

// Target is one place to reach Redis (upstream's SingleRedisConfig).
type Target struct {
	// Addr is host:port; ignored when Sentinel is set.
	Addr string
	// Sentinel lists sentinel host:port addresses; the master is the one
	// they name for ServiceName.
	Sentinel    []string
	ServiceName string
	Password    string
	// SentinelPassword authenticates to the sentinels; nil falls back to
	// Password, as upstream's valkey client does.
	SentinelPassword *string
	UseTLS           bool
	// TLSSkipVerify accepts any server certificate (self-signed ones).
	TLSSkipVerify bool
	// RequestTimeout bounds one command (upstream's request_timeout);
	// zero keeps our short default.
	RequestTimeout time.Duration
}

// Validate says whether t names somewhere to connect.
func (t Target) Validate() error {
	switch {
	case len(t.Sentinel) > 0 && t.ServiceName == "":
		return errors.New("a sentinel list needs service_name beside it")
	case len(t.Sentinel) == 0 && t.Addr == "":
		return errors.New("names neither addr nor sentinel")
	}
	return nil
}

// String names where t points, without secrets, for logs.
func (t Target) String() string {
	scheme := "redis"
	if t.UseTLS {
		scheme = "rediss"
	}
	if len(t.Sentinel) > 0 {
		return fmt.Sprintf("%s-sentinel://%v/%s", scheme, t.Sentinel, t.ServiceName)
	}
	return scheme + "://" + t.Addr
}

// Profile is a base target plus per-role overrides (upstream's
// RedisProfileTarget). An override replaces the base whole: nothing, not
// even the password, is inherited.
type Profile struct {
	Base      Target
	Overrides map[Role]Target
}

// For returns the target role r connects to.
func (p Profile) For(r Role) Target {
	if t, ok := p.Overrides[r]; ok {
		return t
	}
	return p.Base
}

// Validate checks the base and every override.
func (p Profile) Validate() error {
	if err := p.Base.Validate(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	for role, t := range p.Overrides {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("redis override %q: %w", role, err)
		}
	}
	return nil
}

// Client opens a client of role r's database where the profile sends r.
func (p Profile) Client(r Role) *redis.Client {
	return NewClient(p.For(r), r.DB())
}

// Short timeouts, so that an outage is noticed (and events queued) quickly.
const (
	dialTimeout    = 2 * time.Second
	requestTimeout = 2 * time.Second
)

// NewClient returns a client of one logical database at t: a failover
// client that follows the sentinels' master when t names sentinels.
func NewClient(t Target, db int) *redis.Client {
	rw := requestTimeout
	if t.RequestTimeout > 0 {
		rw = t.RequestTimeout
	}
	tlsConfig := t.tlsConfig()
	if len(t.Sentinel) > 0 {
		sentinelPassword := t.Password
		if t.SentinelPassword != nil {
			sentinelPassword = *t.SentinelPassword
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       t.ServiceName,
			SentinelAddrs:    t.Sentinel,
			SentinelPassword: sentinelPassword,
			Password:         t.Password,
			DB:               db,
			DialTimeout:      dialTimeout,
			ReadTimeout:      rw,
			WriteTimeout:     rw,
			MaxRetries:       1,
			DialerRetries:    1,
			Protocol:         2,
			TLSConfig:        tlsConfig,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:         t.Addr,
		Password:     t.Password,
		DB:           db,
		DialTimeout:  dialTimeout,
		ReadTimeout:  rw,
		WriteTimeout: rw,
		MaxRetries:   1,
		// One dial per attempt: go-redis's default of 5 dials 100 ms apart
		// would stall every send for a second while Redis is down.
		DialerRetries: 1,
		// RESP2 avoids the HELLO round trip and works with every Redis
		// and Valkey release a manager runs against.
		Protocol:  2,
		TLSConfig: tlsConfig,
	})
}

func (t Target) tlsConfig() *tls.Config {
	if !t.UseTLS {
		return nil
	}
	// ServerName stays empty: tls.DialWithDialer, which go-redis dials
	// through, takes it from each address, sentinels and master alike.
	return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.TLSSkipVerify} //nolint:gosec // tls_skip_verify asks for it
}
