package pluginhost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// newPluginLogger returns an hclog logger for go-plugin whose lines land in
// the agent's zerolog output tagged with the plugin's name. go-plugin parses
// the plugin's stderr (hclog JSON or plain text) and re-logs it here.
func newPluginLogger(log zerolog.Logger, plugin string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      hclog.Trace,
		Output:     &zerologWriter{log: log.With().Str("plugin", plugin).Logger()},
		JSONFormat: true,
	})
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
