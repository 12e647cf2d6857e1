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
			Output:     &zerologWriter{log: log.With().Str("plugin", plugin).Logger()},
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
	mu      sync.Mutex
	log     zerolog.Logger
	buf     bytes.Buffer
	inPanic bool
}

func newStderrLog(log zerolog.Logger, plugin string) *stderrLog {
	return &stderrLog{log: log.With().Str("plugin", plugin).Logger()}
}

func (w *stderrLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			w.buf.Write(line) // a partial line waits for the rest
			return len(p), nil
		}
		w.emit(bytes.TrimSpace(line))
	}
}

func (w *stderrLog) emit(line []byte) {
	if len(line) == 0 {
		return
	}
	if line[0] == '{' && json.Valid(line) {
		(&zerologWriter{log: w.log}).emit(line)
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

// zerologWriter turns hclog JSON lines into zerolog events.
type zerologWriter struct {
	mu  sync.Mutex
	log zerolog.Logger
	buf bytes.Buffer
}

func (w *zerologWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			// Keep a partial line for the next write.
			w.buf.Write(line)
			return len(p), nil
		}
		w.emit(bytes.TrimSpace(line))
	}
}

func (w *zerologWriter) emit(line []byte) {
	if len(line) == 0 {
		return
	}
	var entry map[string]any
	if err := json.Unmarshal(line, &entry); err != nil {
		w.log.Info().Msg(string(line))
		return
	}
	level := zerologLevel(fmt.Sprint(entry["@level"]))
	msg := fmt.Sprint(entry["@message"])
	ev := w.log.WithLevel(level)
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
