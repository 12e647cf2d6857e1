package pluginhost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// newPluginLogger returns an hclog logger for go-plugin whose lines land in
// the agent's zerolog output tagged with the plugin's name. The plugin's
// own stderr does not go through go-plugin's parser: the logger go-plugin
// names after the executable (stderrName) is switched off, which makes
// go-plugin skip parsing, and stderrLog re-logs the lines instead.
// go-plugin's parser asserts that "@message", "@level" and "@timestamp"
// are strings, so one plugin line such as {"@message": 5} would panic its
// goroutine and take the whole agent down.
func newPluginLogger(log zerolog.Logger, plugin, stderrName string) hclog.Logger {
	return pluginLogger{
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "plugin",
			Level:      hclog.Trace,
			Output:     newZerologWriter(log.With().Str("plugin", plugin).Logger()),
			JSONFormat: true,
		}),
		stderrName: stderrName,
	}
}

// pluginLogger is the hclog logger given to go-plugin; see newPluginLogger.
type pluginLogger struct {
	hclog.Logger
	stderrName string
}

func (l pluginLogger) Named(name string) hclog.Logger {
	if name == l.stderrName {
		return hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
	}
	return pluginLogger{Logger: l.Logger.Named(name), stderrName: l.stderrName}
}

func (l pluginLogger) With(args ...any) hclog.Logger {
	return pluginLogger{Logger: l.Logger.With(args...), stderrName: l.stderrName}
}

// stderrLog re-logs a plugin's stderr lines: hclog JSON lines at their
// level (any value type accepted), plain lines as go-plugin would log them
// (a "[LEVEL]" prefix chooses the level, a Go panic or fatal error and
// what follows is an error, the rest is debug).
type stderrLog struct {
	log     zerolog.Logger
	inPanic bool // guarded by the lineWriter's lock
}

func newStderrLog(log zerolog.Logger, plugin string) io.Writer {
	s := &stderrLog{log: log.With().Str("plugin", plugin).Logger()}
	return &lineWriter{emit: s.emit}
}

func (w *stderrLog) emit(line []byte) {
	if line[0] == '{' && json.Valid(line) {
		emitHclogJSON(w.log, line)
		return
	}
	text := string(line)
	level := zerolog.DebugLevel
	for prefix, l := range map[string]zerolog.Level{"[TRACE]": zerolog.TraceLevel, "[DEBUG]": zerolog.DebugLevel,
		"[INFO]": zerolog.InfoLevel, "[WARN]": zerolog.WarnLevel, "[ERROR]": zerolog.ErrorLevel} {
		if strings.HasPrefix(text, prefix) {
			level = l
		}
	}
	if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
		w.inPanic = true
	}
	if w.inPanic {
		level = zerolog.ErrorLevel
	}
	w.log.WithLevel(level).Msg(text)
}

// newZerologWriter turns the hclog JSON lines written to it into zerolog
// events.
func newZerologWriter(log zerolog.Logger) io.Writer {
	return &lineWriter{emit: func(line []byte) { emitHclogJSON(log, line) }}
}

// lineWriter calls emit, under its lock, with each complete non-empty
// line written to it, trimmed; a partial line waits for the rest.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	emit func(line []byte)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			w.buf.Write(line)
			return len(p), nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			w.emit(line)
		}
	}
}

// emitHclogJSON logs one hclog JSON line at its level; a line that is not
// JSON is logged as it is, at info.
func emitHclogJSON(log zerolog.Logger, line []byte) {
	var entry map[string]any
	if err := json.Unmarshal(line, &entry); err != nil {
		log.Info().Msg(string(line))
		return
	}
	level := zerologLevel(fmt.Sprint(entry["@level"]))
	msg := fmt.Sprint(entry["@message"])
	ev := log.WithLevel(level)
	keys := make([]string, 0, len(entry))
	for k := range entry {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "@level", "@message", "@timestamp", "@module", "@caller":
			continue
		}
		ev = ev.Interface(k, entry[k])
	}
	ev.Msg(msg)
}

func zerologLevel(hclogLevel string) zerolog.Level {
	switch hclogLevel {
	case "trace":
		return zerolog.TraceLevel
	case "debug":
		return zerolog.DebugLevel
	case "info":
		return zerolog.InfoLevel
	case "warn":
		return zerolog.WarnLevel
	case "error":
		return zerolog.ErrorLevel
	default:
		return zerolog.InfoLevel
	}
}

// lineTail keeps the last max lines written to it.
type lineTail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (t *lineTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		if line := string(bytes.TrimSpace(t.part[:i])); line != "" {
			t.lines = append(t.lines, line)
			if len(t.lines) > t.max {
				t.lines = t.lines[1:]
			}
		}
		t.part = t.part[i+1:]
	}
	return len(p), nil
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}
