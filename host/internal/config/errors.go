package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned when no -f path is given and no agent.toml exists
// in any of the searched places.
var ErrNotFound = errors.New("agent.toml not found")

// Problem is one invalid value. Key is the full dotted key ("resource.reserved-mem");
// Env names the environment variable the value came from, if any.
type Problem struct {
	Key     string
	Env     string
	Message string
}

func (p *Problem) Error() string {
	switch {
	case p.Env != "" && p.Key != "":
		return fmt.Sprintf("%s (%s): %s", p.Env, p.Key, p.Message)
	case p.Env != "":
		return p.Env + ": " + p.Message
	case p.Key != "":
		return p.Key + ": " + p.Message
	default:
		return p.Message
	}
}

// ValidationError lists every problem found in one load, so an operator can
// fix them all at once. errors.As finds each *Problem through Unwrap.
type ValidationError struct {
	Source   string
	Problems []*Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		fmt.Fprintf(&b, "%s: ", e.Source)
	}
	fmt.Fprintf(&b, "%d invalid config value(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap exposes each problem to errors.Is/As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Keys lists the dotted keys of the problems, in the order they were found.
func (e *ValidationError) Keys() []string {
	keys := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		keys[i] = p.Key
	}
	return keys
}

// SyntaxError is a TOML syntax error; nothing else is checked after one.
type SyntaxError struct {
	Source string
	Line   int
	Column int
	// Context is the offending line with a marker, for humans.
	Context string
	Err     error
}

func (e *SyntaxError) Error() string {
	source := e.Source
	if source == "" {
		source = "agent.toml"
	}
	return fmt.Sprintf("%s:%d:%d: %v", source, e.Line, e.Column, e.Err)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// WarningKind tells an unknown key from an upstream key this agent ignores.
type WarningKind string

// The kinds of warnings Load returns.
const (
	// WarnUnknownKey: neither this agent nor upstream knows the key (a typo?).
	WarnUnknownKey WarningKind = "unknown-key"
	// WarnIgnoredKey: upstream's backend.ai-agent honours the key, baiagent does not.
	WarnIgnoredKey WarningKind = "ignored-key"
	// WarnDeprecatedKey: an old name, honoured; the message names the new one.
	WarnDeprecatedKey WarningKind = "deprecated-key"
	// WarnNote: something the operator should know, such as where relative
	// paths resolve.
	WarnNote WarningKind = "note"
)

// Warning is a key that was accepted but has no effect, or is honoured
// under an old name. Message, when set, replaces the kind's stock text.
type Warning struct {
	Kind    WarningKind
	Key     string
	Message string
}

func (w Warning) String() string {
	switch {
	case w.Message != "":
		return w.Key + ": " + w.Message
	case w.Kind == WarnIgnoredKey:
		return w.Key + ": honoured by backend.ai-agent but ignored by baiagent"
	default:
		return w.Key + ": unknown key, ignored"
	}
}
