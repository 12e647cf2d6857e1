// Package zaplog routes the zap logs of etcd's client and server into
// zerolog.
package zaplog

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zerologCore routes etcd's zap logs into a zerolog logger. Only
// warnings and worse pass: etcd logs every startup step at info, which would
// drown the agent's own start-up lines. The few warnings and errors that a
// healthy single-node member logs on every start and stop go to debug (see
// benign), so that an operator reads ERR only when something is wrong.
type zerologCore struct {
	log     zerolog.Logger
	fields  []zapcore.Field
	closing *atomic.Bool // set while the member shuts down; nil for a client
}

// New makes etcd's logger; closing (nil for a client's) is set when an
// embedded member starts shutting down.
func New(log zerolog.Logger, closing *atomic.Bool) *zap.Logger {
	return zap.New(&zerologCore{log: log, closing: closing})
}

func (c *zerologCore) Enabled(level zapcore.Level) bool { return level >= zapcore.WarnLevel }

func (c *zerologCore) With(fields []zapcore.Field) zapcore.Core {
	return &zerologCore{log: c.log, closing: c.closing, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *zerologCore) Check(entry zapcore.Entry, checked *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(entry.Level) {
		return checked.AddCore(entry, c)
	}
	return checked
}

func (c *zerologCore) Write(entry zapcore.Entry, fields []zapcore.Field) error {
	encoder := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(encoder)
	}
	for _, f := range fields {
		f.AddTo(encoder)
	}
	var event *zerolog.Event
	switch {
	case benign(entry.Message, errorText(encoder.Fields), c.closing != nil && c.closing.Load()):
		event = c.log.Debug()
	case entry.Level >= zapcore.ErrorLevel:
		event = c.log.Error()
	default:
		event = c.log.Warn()
	}
	event.Fields(encoder.Fields).Msg(entry.Message)
	return nil
}

func (c *zerologCore) Sync() error { return nil }

// errorText is the entry's "error" field as text.
func errorText(fields map[string]any) string {
	switch e := fields["error"].(type) {
	case nil:
		return ""
	case string:
		return e
	default:
		return fmt.Sprint(e)
	}
}

// benign says whether etcd's warning or error is one that a healthy
// single-node member logs as a matter of course:
//   - on its first start, before its first raft term is stored, the
//     storage version monitor cannot read the schema version yet
//     ("missing term information"; etcd-io/etcd#18978);
//   - while it shuts down, its listeners report being closed.
func benign(msg, errText string, closing bool) bool {
	switch {
	case strings.Contains(errText, "missing term information"), strings.Contains(errText, "missing confstate information"):
		return msg == "failed to update storage version" || msg == "Failed to detect schema version"
	case closing:
		lower := strings.ToLower(errText)
		return strings.Contains(lower, "server closed") || strings.Contains(lower, "use of closed network connection")
	}
	return false
}
