package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/kballard/go-shellquote"
)

// serviceDefinition is upstream's ServiceDefinition (kernel/service.py),
// read from /etc/backend.ai/service-defs/<name>.json.
type serviceDefinition struct {
	// command is a list, or a string: run by shell with -c, or
	// shlex-split when shell is empty or null.
	commandList   []string
	commandString string
	isString      bool
	shell         string
	noop          bool
	urlTemplate   string
	prestart      []prestartAction
	env           []keyValue // in the file's order
	allowedEnvs   []string
	allowedArgs   []string
	defaultArgs   []argument // in the file's order
}

type keyValue struct{ key, value string }

// argument is one entry of default_arguments or opts.arguments: a str, a
// list of str, or anything else (None, a number), which adds the bare flag.
type argument struct {
	name   string
	value  *string
	values []string
	isList bool
}

type prestartAction struct {
	action string
	args   map[string]json.RawMessage
	ref    string // "" for none
}

// definitionFields are ServiceDefinition's attributes; upstream's
// ServiceDefinition(**raw) refuses any other key.
var definitionFields = []string{"command", "shell", "noop", "url_template", "prestart_actions", "env",
	"allowed_envs", "allowed_arguments", "default_arguments"}

// orderedObject decodes a JSON object keeping its keys' order, as Python's
// json.load does.
func orderedObject(raw json.RawMessage) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not an object")
	}
	var keys []string
	vals := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if _, dup := vals[key]; !dup {
			keys = append(keys, key)
		}
		vals[key] = v // a repeated key keeps its first place and last value, as a dict
	}
	return keys, vals, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// pyTruthy is bool(value) of a JSON value.
func pyTruthy(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

func invalidDef(format string, args ...any) *pyError {
	return pyErr("InvalidServiceDefinition", format, args...)
}

// parseServiceDefinition reads one service-def file's content.
func parseServiceDefinition(raw []byte) (serviceDefinition, error) {
	keys, fields, err := orderedObject(raw)
	if err != nil {
		return serviceDefinition{}, invalidDef("malformed JSON in service-def file: %v", err)
	}
	// upstream renames prestart to prestart_actions, overwriting it.
	if p, ok := fields["prestart"]; ok {
		fields["prestart_actions"] = p
		delete(fields, "prestart")
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == "prestart" || k == "prestart_actions" })
		keys = append(keys, "prestart_actions")
	}
	for _, k := range keys {
		if !slices.Contains(definitionFields, k) {
			return serviceDefinition{}, invalidDef("got an unexpected keyword argument '%s'", k)
		}
	}
	def := serviceDefinition{shell: "bash"}
	cmd, ok := fields["command"]
	if !ok {
		return serviceDefinition{}, invalidDef("missing 1 required positional argument: 'command'")
	}
	if err := json.Unmarshal(cmd, &def.commandString); err == nil {
		def.isString = true
	} else if err := json.Unmarshal(cmd, &def.commandList); err != nil || def.commandList == nil {
		return serviceDefinition{}, invalidDef("command must be a string or a list of strings")
	}
	if sh, ok := fields["shell"]; ok && !isNull(sh) {
		if err := json.Unmarshal(sh, &def.shell); err != nil {
			return serviceDefinition{}, invalidDef("shell must be a string or null")
		}
	} else if ok {
		def.shell = ""
	}
	if v, ok := fields["noop"]; ok {
		def.noop = pyTruthy(v)
	}
	if v, ok := fields["url_template"]; ok {
		if err := json.Unmarshal(v, &def.urlTemplate); err != nil {
			return serviceDefinition{}, invalidDef("url_template must be a string")
		}
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"allowed_envs", &def.allowedEnvs}, {"allowed_arguments", &def.allowedArgs}} {
		if v, ok := fields[f.name]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return serviceDefinition{}, invalidDef("%s must be a list of strings", f.name)
			}
		}
	}
	if v, ok := fields["env"]; ok {
		names, vals, err := orderedObject(v)
		if err != nil {
			return serviceDefinition{}, invalidDef("env must be an object of strings")
		}
		for _, n := range names {
			var s string
			if err := json.Unmarshal(vals[n], &s); err != nil {
				return serviceDefinition{}, invalidDef("env %s must be a string", n)
			}
			def.env = append(def.env, keyValue{n, s})
		}
	}
	if v, ok := fields["default_arguments"]; ok {
		if def.defaultArgs, err = parseArguments(v); err != nil {
			return serviceDefinition{}, invalidDef("default_arguments: %v", err)
		}
	}
	if v, ok := fields["prestart_actions"]; ok && !isNull(v) {
		var actions []json.RawMessage
		if err := json.Unmarshal(v, &actions); err != nil {
			return serviceDefinition{}, invalidDef("prestart must be a list of actions")
		}
		for i, a := range actions {
			var act struct {
				Action *string                    `json:"action"`
				Args   map[string]json.RawMessage `json:"args"`
				Ref    *string                    `json:"ref"`
			}
			if err := json.Unmarshal(a, &act); err != nil || act.Action == nil {
				return serviceDefinition{}, invalidDef("prestart action %d: want {\"action\": str, \"args\": {...}, \"ref\": str|null}", i)
			}
			pa := prestartAction{action: *act.Action, args: act.Args}
			if act.Ref != nil {
				pa.ref = *act.Ref
			}
			def.prestart = append(def.prestart, pa)
		}
	}
	return def, nil
}

// parseArguments reads an object of arguments in order.
func parseArguments(raw json.RawMessage) ([]argument, error) {
	names, vals, err := orderedObject(raw)
	if err != nil {
		return nil, fmt.Errorf("want an object: %w", err)
	}
	out := make([]argument, 0, len(names))
	for _, n := range names {
		a, err := parseArgument(n, vals[n])
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parseArgument(name string, raw json.RawMessage) (argument, error) {
	a := argument{name: name}
	var s string
	var list []json.RawMessage
	if isNull(raw) {
		return a, nil // a bare flag
	}
	if json.Unmarshal(raw, &s) == nil {
		a.value = &s
	} else if json.Unmarshal(raw, &list) == nil && list != nil {
		a.isList = true
		for _, item := range list {
			var v string
			if err := json.Unmarshal(item, &v); err != nil {
				// upstream's interpolator fails on a non-str argument.
				return argument{}, fmt.Errorf("argument %s: list items must be strings", name)
			}
			a.values = append(a.values, v)
		}
	}
	return a, nil
}

// actionSignatures are the keyword arguments of upstream's service_actions,
// required ones first.
var actionSignatures = map[string]struct{ required, optional []string }{
	"write_file":     {[]string{"filename", "body"}, []string{"mode", "append"}},
	"write_tempfile": {[]string{"body"}, []string{"mode"}},
	"run_command":    {[]string{"command"}, []string{"echo"}},
	"mkdir":          {[]string{"path"}, nil},
	"log":            {[]string{"message"}, []string{"debug"}},
}

// actionEnv is what prestart actions act in.
type actionEnv struct {
	workDir string
	tempDir string
	// cred: actions act as the kernel user, who owns what they make.
	cred   *syscall.Credential
	log    *slog.Logger
	stdout *os.File
	stderr *os.File
}

// runAction runs one prestart action and returns its value for ref.
func runAction(ctx context.Context, env actionEnv, service string, a prestartAction, vars map[string]any) (any, error) {
	sig, ok := actionSignatures[a.action]
	if !ok {
		return nil, invalidDef("Service-def for %s used invalid action: %s", service, a.action)
	}
	if a.args == nil {
		return nil, &pyError{class: "KeyError", msg: "args"}
	}
	names := make([]string, 0, len(a.args))
	for k := range a.args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !slices.Contains(sig.required, k) && !slices.Contains(sig.optional, k) {
			return nil, pyErr("TypeError", "%s() got an unexpected keyword argument '%s'", a.action, k)
		}
	}
	for _, k := range sig.required {
		if _, ok := a.args[k]; !ok {
			return nil, pyErr("TypeError", "%s() missing 1 required positional argument: '%s'", a.action, k)
		}
	}
	str := func(name, def string) (string, error) {
		raw, ok := a.args[name]
		if !ok {
			return def, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", pyErr("TypeError", "%s(): %s must be a str", a.action, name)
		}
		return s, nil
	}
	format := func(s string) (string, error) { return formatMap(s, vars) }
	path := func(p string) string {
		if filepath.IsAbs(p) || env.workDir == "" {
			return p
		}
		return filepath.Join(env.workDir, p)
	}
	switch a.action {
	case "write_file", "write_tempfile":
		modeText, err := str("mode", "644")
		if err != nil {
			return nil, err
		}
		mode, err := parseOctal(modeText)
		if err != nil {
			return nil, err
		}
		lines, err := iterStrings(a.action, "body", a.args["body"])
		if err != nil {
			return nil, err
		}
		var body strings.Builder
		for _, l := range lines {
			out, err := format(l)
			if err != nil {
				return nil, err
			}
			body.WriteString(out)
			if a.action == "write_file" {
				body.WriteByte('\n') // writelines(line + "\n"); write_tempfile adds none
			}
		}
		if a.action == "write_tempfile" {
			// NamedTemporaryFile(suffix=".py", delete=False) in the temp dir.
			f, err := os.CreateTemp(env.tempDir, "tmp*.py")
			if err != nil {
				return nil, err
			}
			name := f.Name()
			_, werr := f.WriteString(body.String())
			if err := errors.Join(werr, f.Close(), os.Chmod(name, mode), chownTo(env.cred, name)); err != nil {
				return nil, err
			}
			return name, nil
		}
		name, err := str("filename", "")
		if err != nil {
			return nil, err
		}
		if name, err = format(name); err != nil {
			return nil, err
		}
		// upstream opens with "w+" when append is true: that truncates as
		// "w" does, so the file never keeps what it had. Kept as upstream.
		name = path(name)
		if err := os.WriteFile(name, []byte(body.String()), 0o666); err != nil {
			return nil, err
		}
		return nil, errors.Join(os.Chmod(name, mode), chownTo(env.cred, name))
	case "run_command":
		pieces, err := iterStrings(a.action, "command", a.args["command"])
		if err != nil {
			return nil, err
		}
		argv := make([]string, len(pieces))
		for i, p := range pieces {
			if argv[i], err = format(p); err != nil {
				return nil, err
			}
		}
		if len(argv) == 0 {
			return nil, pyErr("ValueError", "run_command: empty command")
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = env.workDir
		if env.cred != nil {
			cmd.SysProcAttr = procAttr(env.cred)
		}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				return nil, fmt.Errorf("run_command %q: %w", argv[0], err)
			}
			// A non-zero exit is no failure upstream: the output is the value.
		}
		if raw, ok := a.args["echo"]; ok && pyTruthy(raw) {
			_, _ = env.stdout.Write(out.Bytes())
			_, _ = env.stderr.Write(errOut.Bytes())
		}
		if !utf8.Valid(out.Bytes()) || !utf8.Valid(errOut.Bytes()) {
			return nil, pyErr("UnicodeDecodeError", "run_command %s: output is not UTF-8", argv[0])
		}
		return pyDict{keys: []string{"out", "err"}, vals: map[string]string{"out": out.String(), "err": errOut.String()}}, nil
	case "mkdir":
		p, err := str("path", "")
		if err != nil {
			return nil, err
		}
		if p, err = format(p); err != nil {
			return nil, err
		}
		return nil, mkdirAllAs(env.cred, path(p))
	case "log":
		msg, err := str("message", "")
		if err != nil {
			return nil, err
		}
		if msg, err = format(msg); err != nil {
			return nil, err
		}
		if raw, ok := a.args["debug"]; ok && pyTruthy(raw) {
			env.log.Debug(msg, "service", service)
		} else {
			env.log.Info(msg, "service", service)
		}
		return nil, nil
	}
	return nil, invalidDef("Service-def for %s used invalid action: %s", service, a.action)
}

// iterStrings is Python's iteration over a body or command argument: a
// list's items (str() of each for run_command), or a string's characters.
func iterStrings(action, name string, raw json.RawMessage) ([]string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		out := make([]string, 0, len(s))
		for _, r := range s {
			out = append(out, string(r))
		}
		return out, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, pyErr("TypeError", "%s(): %s is not iterable", action, name)
	}
	out := make([]string, len(items))
	for i, item := range items {
		if json.Unmarshal(item, &out[i]) == nil {
			continue
		}
		if action != "run_command" {
			return nil, pyErr("TypeError", "%s(): %s items must be str", action, name)
		}
		out[i] = pyStrJSON(item) // str(piece)
	}
	return out, nil
}

// pyStrJSON is str() of a JSON scalar as Python loaded it.
func pyStrJSON(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v)
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case float64:
		t := strings.TrimSpace(string(raw))
		if _, err := strconv.ParseInt(t, 10, 64); err == nil {
			return t
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.TrimSpace(string(raw))
}

// parseOctal is int(mode, 8).
func parseOctal(s string) (os.FileMode, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0o"), "0O")
	n, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" {
		return 0, pyErr("ValueError", "invalid literal for int() with base 8: %s", pyRepr(s))
	}
	return os.FileMode(n) & (os.ModePerm | 0o7000), nil
}

// serviceOptions is the start request's opts: arguments and envs.
type serviceOptions struct {
	arguments []argument
	envs      []keyValue
}

func parseServiceOptions(opts map[string]any) (serviceOptions, error) {
	var o serviceOptions
	if raw, ok := opts["arguments"]; ok && raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			return o, pyErr("AttributeError", "'%T' object has no attribute 'items'", raw)
		}
		// The request arrives as a JSON object, whose order is lost: its
		// arguments follow in name order.
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			b, _ := json.Marshal(m[n])
			a, err := parseArgument(n, b)
			if err != nil {
				return o, pyErr("TypeError", "%v", err)
			}
			o.arguments = append(o.arguments, a)
		}
	}
	if raw, ok := opts["envs"]; ok && raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			return o, pyErr("AttributeError", "'%T' object has no attribute 'items'", raw)
		}
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v, ok := m[n].(string)
			if !ok {
				return o, pyErr("TypeError", "environment variable %s: expected str, not %T", n, m[n])
			}
			o.envs = append(o.envs, keyValue{n, v})
		}
	}
	return o, nil
}

// commandLine is upstream's ServiceParser.start_service after the
// prestart actions: the argv with the arguments appended and everything
// interpolated, and the definition's env over the request's envs. frozen
// is the runner's child environment, which a request may not override.
func (d serviceDefinition) commandLine(service string, vars map[string]any, opts serviceOptions, frozen func(string) bool) ([]string, []keyValue, error) {
	var argv []string
	switch {
	case !d.isString:
		argv = slices.Clone(d.commandList)
	case d.shell != "":
		argv = []string{d.shell, "-c", d.commandString}
	default:
		words, err := shellquote.Split(d.commandString)
		if err != nil {
			return nil, nil, pyErr("ValueError", "%v", err)
		}
		argv = words
	}
	args := slices.Clone(d.defaultArgs)
	for _, a := range opts.arguments {
		if !slices.Contains(d.allowedArgs, a.name) {
			return nil, nil, pyErr("DisallowedArgument", "Argument %s not allowed for service %s", a.name, service)
		}
		if i := slices.IndexFunc(args, func(b argument) bool { return b.name == a.name }); i >= 0 {
			args[i] = a
		} else {
			args = append(args, a)
		}
	}
	for _, a := range args {
		argv = append(argv, a.name)
		switch {
		case a.value != nil:
			argv = append(argv, *a.value)
		case a.isList:
			argv = append(argv, a.values...)
		}
	}
	for i, part := range argv {
		out, err := interpolate(part, vars)
		if err != nil {
			return nil, nil, err
		}
		argv[i] = out
	}
	var env []keyValue
	for _, e := range opts.envs {
		if !slices.Contains(d.allowedEnvs, e.key) {
			return nil, nil, pyErr("DisallowedEnvironment", "Environment variable %s not allowed for service %s", e.key, service)
		}
		if frozen(e.key) {
			return nil, nil, pyErr("DisallowedEnvironment", "Environment variable %s can't be overwritten", e.key)
		}
		env = append(env, e)
	}
	for _, e := range d.env {
		k, err := interpolate(e.key, vars)
		if err != nil {
			return nil, nil, err
		}
		v, err := interpolate(e.value, vars)
		if err != nil {
			return nil, nil, err
		}
		env = append(env, keyValue{k, v})
	}
	return argv, env, nil
}
