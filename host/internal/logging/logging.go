// Package logging builds the agent's zerolog logger from [logging].
package logging

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// Format is console (human) or json (machines).
type Format string

const (
	Console Format = "console"
	JSON    Format = "json"
)

// New returns a logger writing to w at level in the given format.
func New(w io.Writer, level zerolog.Level, format Format) zerolog.Logger {
	if format == Console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// Stderr is New on os.Stderr.
func Stderr(level zerolog.Level, format Format) zerolog.Logger {
	return New(os.Stderr, level, format)
}
