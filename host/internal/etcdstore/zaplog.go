package etcdstore

import (
	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zerologCore routes etcd's zap logs into the agent's zerolog logger. Only
// warnings and worse pass: etcd logs every startup step at info, which would
// drown the agent's own start-up lines.
type zerologCore struct {
	log    zerolog.Logger
	fields []zapcore.Field
}

func newZapLogger(log zerolog.Logger) *zap.Logger {
	return zap.New(&zerologCore{log: log})
}

func (c *zerologCore) Enabled(level zapcore.Level) bool { return level >= zapcore.WarnLevel }

func (c *zerologCore) With(fields []zapcore.Field) zapcore.Core {
	return &zerologCore{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
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
	case entry.Level >= zapcore.ErrorLevel:
		event = c.log.Error()
	default:
		event = c.log.Warn()
	}
	event.Fields(encoder.Fields).Msg(entry.Message)
	return nil
}

func (c *zerologCore) Sync() error { return nil }
