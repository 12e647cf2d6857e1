package runner

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestInterpolate pins upstream's ServiceArgumentInterpolator.apply
// (src/ai/backend/kernel/service.py, 26.8.1) and str.format_map.
func TestInterpolate(t *testing.T) {
	vars := map[string]any{
		"runtime_path": "/usr/bin/python3",
		"ports":        []int{8080, 8081},
		"cfg":          "/tmp/tmpabc.py",
		"r":            pyDict{keys: []string{"out", "err"}, vals: map[string]string{"out": "v1\n", "err": ""}},
		"none":         nil,
		"n":            42,
	}
	cases := []struct {
		name, in, want, wantErr string
	}{
		{name: "plain text", in: "--ip=0.0.0.0", want: "--ip=0.0.0.0"},
		{name: "runtime_path", in: "{runtime_path}", want: "/usr/bin/python3"},
		{name: "port by index", in: "--port={ports[0]}", want: "--port=8080"},
		{name: "second port", in: "{ports[1]}", want: "8081"},
		{name: "ref", in: "--config={cfg}", want: "--config=/tmp/tmpabc.py"},
		{name: "dict item of run_command", in: "{r[out]}", want: "v1\n"},
		{name: "github style", in: "${{ ports[0] }}", want: "8080"},
		{name: "github style without spaces", in: "${{cfg}}", want: "/tmp/tmpabc.py"},
		{name: "spaces inside python style", in: "{ ports[1] }", want: "8081"},
		{name: "shell variable left alone", in: "echo ${HOME}", want: "echo ${HOME}"},
		{name: "format spec width", in: "[{n:>5}]", want: "[   42]"},
		{name: "format spec zero pad", in: "{n:05d}", want: "00042"},
		{name: "format spec hex", in: "{n:#x}", want: "0x2a"},
		{name: "format spec string precision", in: "{runtime_path:.8}", want: "/usr/bin"},
		{name: "format spec centre with fill", in: "{n:*^6}", want: "**42**"},
		{name: "format spec grouping", in: "{ports[0]:,}", want: "8,080"},
		{name: "conversion repr", in: "{cfg!r}", want: "'/tmp/tmpabc.py'"},
		{name: "None renders as None", in: "{none}", want: "None"},
		{name: "list renders as its repr", in: "{ports}", want: "[8080, 8081]"},
		{name: "dict renders as its repr", in: "{r}", want: `{'out': 'v1\n', 'err': ''}`},
		{name: "string index", in: "{runtime_path[1]}", want: "u"},
		{name: "two fields", in: "{ports[0]}-{ports[1]}", want: "8080-8081"},
		{name: "undefined variable", in: "{missing}", wantErr: `InvalidServiceDefinition("Cannot interpolate service argument '{missing}': undefined template variable 'missing'.")`},
		{name: "port index out of range", in: "{ports[5]}", wantErr: "undefined template variable list index out of range"},
		{name: "missing dict key", in: "{r[code]}", wantErr: "undefined template variable 'code'"},
		{name: "empty field refused", in: "{}", wantErr: "positional fields"},
		{name: "positional index refused", in: "{0}", wantErr: "undefined template variable Replacement index 0"},
		{name: "literal JSON braces refused", in: `{"a": 1}`, wantErr: "undefined template variable"},
		{name: "doubled braces refused as upstream", in: "{{x}}", wantErr: "Literal braces"},
		{name: "attribute refused", in: "{cfg.upper}", wantErr: "AttributeError"},
		{name: "string spec on int refused", in: "{n:s}", wantErr: "Unknown format code 's'"},
		{name: "unclosed brace stays text", in: "{ports[0]", want: "{ports[0]"},
		{name: "newline inside braces is no field", in: "{ports\n[0]}", want: "{ports\n[0]}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := interpolate(tc.in, vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestFormatMap pins str.format_map as service_actions.py uses it on whole
// strings (braces doubled for literals).
func TestFormatMap(t *testing.T) {
	vars := map[string]any{"ports": []int{8888}, "w": 6}
	cases := []struct{ name, in, want, wantErr string }{
		{name: "escaped braces", in: `{{"port": {ports[0]}}}`, want: `{"port": 8888}`},
		{name: "nested spec field", in: "[{ports[0]:>{w}}]", want: "[  8888]"},
		{name: "single closing brace", in: "a}", wantErr: "Single '}'"},
		{name: "single opening brace", in: "a{", wantErr: "Single '{'"},
		{name: "unterminated field", in: "{ports", wantErr: "expected '}'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := formatMap(tc.in, vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func action(t *testing.T, js string) prestartAction {
	t.Helper()
	def, err := parseServiceDefinition([]byte(`{"command": ["x"], "prestart": [` + js + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return def.prestart[0]
}

// TestPrestartActions pins upstream's service_actions
// (src/ai/backend/kernel/service_actions.py, 26.8.1): file modes, line
// endings and return values.
func TestPrestartActions(t *testing.T) {
	dir := t.TempDir()
	env := actionEnv{workDir: dir, tempDir: dir, log: slog.New(slog.DiscardHandler), stdout: os.Stdout, stderr: os.Stderr}
	vars := func() map[string]any { return map[string]any{"ports": []int{8080}, "runtime_path": "/bin/sh"} }
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mode := func(p string) os.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	cases := []struct {
		name    string
		action  string
		want    any // the return value; a func checks it
		check   func(t *testing.T, ret any)
		wantErr string
	}{
		{name: "write_file adds a newline to each line, mode 644, returns None",
			action: `{"action": "write_file", "args": {"filename": "a.cfg", "body": ["port={ports[0]}", "x"]}}`,
			check: func(t *testing.T, ret any) {
				if ret != nil || read(filepath.Join(dir, "a.cfg")) != "port=8080\nx\n" || mode(filepath.Join(dir, "a.cfg")) != 0o644 {
					t.Fatalf("ret %v, %q %o", ret, read(filepath.Join(dir, "a.cfg")), mode(filepath.Join(dir, "a.cfg")))
				}
			}},
		{name: "write_file with mode 600 and an interpolated file name",
			action: `{"action": "write_file", "args": {"filename": "p{ports[0]}.txt", "body": ["s"], "mode": "600"}}`,
			check: func(t *testing.T, ret any) {
				if p := filepath.Join(dir, "p8080.txt"); read(p) != "s\n" || mode(p) != 0o600 {
					t.Fatalf("%q %o", read(p), mode(p))
				}
			}},
		{name: "write_file append truncates as upstream's w+",
			action: `{"action": "write_file", "args": {"filename": "a.cfg", "body": ["new"], "append": true}}`,
			check: func(t *testing.T, ret any) {
				if got := read(filepath.Join(dir, "a.cfg")); got != "new\n" {
					t.Fatalf("%q", got)
				}
			}},
		{name: "write_file body as a string writes one character a line",
			action: `{"action": "write_file", "args": {"filename": "c.txt", "body": "ab"}}`,
			check: func(t *testing.T, ret any) {
				if got := read(filepath.Join(dir, "c.txt")); got != "a\nb\n" {
					t.Fatalf("%q", got)
				}
			}},
		{name: "write_file escaped braces for JSON",
			action: `{"action": "write_file", "args": {"filename": "j.json", "body": ["{{\"port\": {ports[0]}}}"]}}`,
			check: func(t *testing.T, ret any) {
				if got := read(filepath.Join(dir, "j.json")); got != "{\"port\": 8080}\n" {
					t.Fatalf("%q", got)
				}
			}},
		{name: "write_tempfile writes lines as given and returns a .py path",
			action: `{"action": "write_tempfile", "args": {"body": ["c.port = {ports[0]}\n", "c.ip = '0.0.0.0'"], "mode": "640"}}`,
			check: func(t *testing.T, ret any) {
				p, ok := ret.(string)
				if !ok || !strings.HasSuffix(p, ".py") || read(p) != "c.port = 8080\nc.ip = '0.0.0.0'" || mode(p) != 0o640 {
					t.Fatalf("ret %v", ret)
				}
			}},
		{name: "run_command returns out and err",
			action: `{"action": "run_command", "args": {"command": ["/bin/sh", "-c", "echo {ports[0]}; echo e >&2; exit 3"]}}`,
			want:   pyDict{keys: []string{"out", "err"}, vals: map[string]string{"out": "8080\n", "err": "e\n"}}},
		{name: "run_command with a number in the command",
			action: `{"action": "run_command", "args": {"command": ["/bin/echo", 5, true], "echo": true}}`,
			want:   pyDict{keys: []string{"out", "err"}, vals: map[string]string{"out": "5 True\n", "err": ""}}},
		{name: "run_command of a missing program fails",
			action: `{"action": "run_command", "args": {"command": ["/nonexistent"]}}`, wantErr: "nonexistent"},
		{name: "mkdir makes parents",
			action: `{"action": "mkdir", "args": {"path": "d/{ports[0]}/e"}}`,
			check: func(t *testing.T, ret any) {
				if st, err := os.Stat(filepath.Join(dir, "d/8080/e")); ret != nil || err != nil || !st.IsDir() {
					t.Fatalf("ret %v err %v", ret, err)
				}
			}},
		{name: "mkdir of an existing dir is fine", action: `{"action": "mkdir", "args": {"path": "d"}}`},
		{name: "log returns None", action: `{"action": "log", "args": {"message": "port {ports[0]}", "debug": true}}`},
		{name: "log of an undefined variable fails", action: `{"action": "log", "args": {"message": "{nope}"}}`, wantErr: "KeyError('nope')"},
		{name: "unknown action", action: `{"action": "rm_rf", "args": {}}`, wantErr: "used invalid action: rm_rf"},
		{name: "unexpected argument", action: `{"action": "mkdir", "args": {"path": "x", "mode": "700"}}`, wantErr: "unexpected keyword argument 'mode'"},
		{name: "missing argument", action: `{"action": "write_file", "args": {"filename": "x"}}`, wantErr: "missing 1 required positional argument: 'body'"},
		{name: "missing args", action: `{"action": "mkdir"}`, wantErr: "KeyError('args')"},
		{name: "bad mode", action: `{"action": "write_tempfile", "args": {"body": [], "mode": "rw"}}`, wantErr: "base 8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ret, err := runAction(context.Background(), env, "svc", action(t, tc.action), vars())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want error with %q", ret, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, ret)
			} else if !reflect.DeepEqual(ret, tc.want) {
				t.Fatalf("got %#v, want %#v", ret, tc.want)
			}
		})
	}
}

// TestCommandLine pins ServiceParser.start_service's command, arguments
// and envs (src/ai/backend/kernel/service.py, 26.8.1).
func TestCommandLine(t *testing.T) {
	vars := map[string]any{"runtime_path": "/usr/bin/python3", "ports": []int{8180}}
	frozen := func(k string) bool { return k == "HOME" }
	vscode := `{"command": ["/usr/bin/code-server", "--port", "{ports[0]}"], "allowed_arguments": ["--auth", "--log"],
		"default_arguments": {"--auth": "none", "--disable-telemetry": null, "--extra": ["a", "b"]}, "allowed_envs": ["PASSWORD", "HOME"],
		"env": {"SVC_{ports[0]}": "{runtime_path}"}}`
	cases := []struct {
		name     string
		def      string
		opts     map[string]any
		wantArgv []string
		wantEnv  []keyValue
		wantErr  string
	}{
		{name: "list command as is", def: `{"command": ["{runtime_path}", "-m", "http.server", "{ports[0]}"]}`,
			wantArgv: []string{"/usr/bin/python3", "-m", "http.server", "8180"}},
		{name: "string command runs with bash -c by default", def: `{"command": "echo {ports[0]} && sleep 1"}`,
			wantArgv: []string{"bash", "-c", "echo 8180 && sleep 1"}},
		{name: "string command with a chosen shell", def: `{"command": "exec x", "shell": "/bin/sh"}`,
			wantArgv: []string{"/bin/sh", "-c", "exec x"}},
		{name: "string command shlex-split without a shell", def: `{"command": "{runtime_path} -c 'print(1)' \"a b\" c\\ d", "shell": null}`,
			wantArgv: []string{"/usr/bin/python3", "-c", "print(1)", "a b", "c d"}},
		{name: "empty shell splits too", def: `{"command": "a b", "shell": ""}`, wantArgv: []string{"a", "b"}},
		{name: "unclosed quote fails the split", def: `{"command": "a 'b", "shell": null}`, wantErr: "ValueError"},
		{name: "default arguments in order: str, None as a bare flag, list",
			def:      vscode,
			wantArgv: []string{"/usr/bin/code-server", "--port", "8180", "--auth", "none", "--disable-telemetry", "--extra", "a", "b"},
			wantEnv:  []keyValue{{"SVC_8180", "/usr/bin/python3"}}},
		{name: "an allowed argument overrides a default in place, a new one follows",
			def: vscode, opts: map[string]any{"arguments": map[string]any{"--auth": "password", "--log": "debug"}},
			wantArgv: []string{"/usr/bin/code-server", "--port", "8180", "--auth", "password", "--disable-telemetry", "--extra", "a", "b", "--log", "debug"},
			wantEnv:  []keyValue{{"SVC_8180", "/usr/bin/python3"}}},
		{name: "request arguments are interpolated too",
			def: vscode, opts: map[string]any{"arguments": map[string]any{"--log": "{ports[0]}"}},
			wantArgv: []string{"/usr/bin/code-server", "--port", "8180", "--auth", "none", "--disable-telemetry", "--extra", "a", "b", "--log", "8180"},
			wantEnv:  []keyValue{{"SVC_8180", "/usr/bin/python3"}}},
		{name: "a disallowed argument", def: vscode, opts: map[string]any{"arguments": map[string]any{"--bind-addr": "0.0.0.0"}},
			wantErr: `DisallowedArgument('Argument --bind-addr not allowed for service vscode')`},
		{name: "an allowed env", def: vscode, opts: map[string]any{"envs": map[string]any{"PASSWORD": "s3cret"}},
			wantArgv: []string{"/usr/bin/code-server", "--port", "8180", "--auth", "none", "--disable-telemetry", "--extra", "a", "b"},
			wantEnv:  []keyValue{{"PASSWORD", "s3cret"}, {"SVC_8180", "/usr/bin/python3"}}},
		{name: "a disallowed env", def: vscode, opts: map[string]any{"envs": map[string]any{"LD_PRELOAD": "x"}},
			wantErr: `DisallowedEnvironment('Environment variable LD_PRELOAD not allowed for service vscode')`},
		{name: "an allowed env already in the runner's env", def: vscode, opts: map[string]any{"envs": map[string]any{"HOME": "/"}},
			wantErr: `DisallowedEnvironment("Environment variable HOME can't be overwritten")`},
		{name: "empty opts change nothing", def: `{"command": ["a"]}`, opts: map[string]any{"arguments": map[string]any{}, "envs": nil},
			wantArgv: []string{"a"}},
		{name: "undefined variable in the command", def: `{"command": ["a", "{nope}"]}`, wantErr: "undefined template variable 'nope'"},
		{name: "undefined variable in an env name", def: `{"command": ["a"], "env": {"{nope}": "1"}}`, wantErr: "undefined template variable 'nope'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			def, err := parseServiceDefinition([]byte(tc.def))
			if err != nil {
				t.Fatal(err)
			}
			opts, err := parseServiceOptions(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			argv, env, err := def.commandLine("vscode", vars, opts, frozen)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error with %q", argv, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(argv, tc.wantArgv) || !reflect.DeepEqual(env, tc.wantEnv) {
				t.Fatalf("got %q %q, %v; want %q %q", argv, env, err, tc.wantArgv, tc.wantEnv)
			}
		})
	}
}

// TestParseServiceDefinition: upstream's ServiceDefinition(**raw) after
// the prestart rename (src/ai/backend/kernel/service.py, 26.8.1).
func TestParseServiceDefinition(t *testing.T) {
	cases := []struct{ name, def, wantErr string }{
		{name: "minimal", def: `{"command": ["a"]}`},
		{name: "every field", def: `{"command": "a", "shell": "sh", "noop": false, "url_template": "http://{host}:{port}/", "prestart_actions": [],
			"env": {}, "allowed_envs": [], "allowed_arguments": [], "default_arguments": {}}`},
		{name: "prestart renamed", def: `{"command": ["a"], "prestart": [{"action": "log", "args": {"message": "m"}, "ref": null}]}`},
		{name: "command missing", def: `{}`, wantErr: "missing 1 required positional argument: 'command'"},
		{name: "unknown field", def: `{"command": ["a"], "protocol": "http"}`, wantErr: "unexpected keyword argument 'protocol'"},
		{name: "malformed JSON", def: `{"command": `, wantErr: "malformed JSON"},
		{name: "command of numbers", def: `{"command": [1]}`, wantErr: "command must be"},
		{name: "action without a name", def: `{"command": ["a"], "prestart": [{"args": {}}]}`, wantErr: "prestart action 0"},
		{name: "env value not a string", def: `{"command": ["a"], "env": {"A": 1}}`, wantErr: "env A"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServiceDefinition([]byte(tc.def))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzServiceDefinition: a service definition comes from any image.
// Parsing and building the command line never panics, and a definition
// that parses builds only interpolated arguments.
func FuzzServiceDefinition(f *testing.F) {
	f.Add([]byte(`{"command": ["{runtime_path}", "--port={ports[0]}"], "default_arguments": {"--auth": "none"}}`), "--auth", "x")
	f.Add([]byte(`{"command": "echo ${{ ports[0] }} {x!r:>9}", "env": {"A_{ports[0]}": "{runtime_path[0]}"}}`), "", "")
	f.Add([]byte(`{"command": "a 'b c'", "shell": null, "prestart": [{"action": "log", "args": {"message": "{{}}"}}]}`), "k", "{")
	f.Fuzz(func(t *testing.T, raw []byte, argName, argValue string) {
		def, err := parseServiceDefinition(raw)
		if err != nil {
			return
		}
		vars := map[string]any{"runtime_path": "/bin/sh", "ports": []int{8080}, "x": "v"}
		opts := serviceOptions{arguments: []argument{{name: argName, value: &argValue}}}
		def.allowedArgs = append(def.allowedArgs, argName)
		argv, env, err := def.commandLine("svc", vars, opts, func(string) bool { return false })
		if err != nil {
			if _, ok := err.(*pyError); !ok {
				t.Fatalf("error %T %v is not a Python exception", err, err)
			}
			return
		}
		if len(argv) == 0 && def.isString {
			return
		}
		_ = env
		for _, a := range def.prestart {
			if _, err := json.Marshal(a.args); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzInterpolate: any template either renders or fails with a Python
// exception; text without braces is left alone.
func FuzzInterpolate(f *testing.F) {
	for _, s := range []string{"{ports[0]}", "${{ r[out] }}", "{n:*^10,}", "{{x}}", "${HOME}", "{a!r:{w}}", "{ports[99999999999999999999]}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // templates come from JSON, which is UTF-8
		}
		vars := map[string]any{"ports": []int{1}, "n": -7, "a": "é'\"", "w": 3,
			"r": pyDict{keys: []string{"out"}, vals: map[string]string{"out": "o"}}}
		out, err := interpolate(s, vars)
		if err != nil {
			if _, ok := err.(*pyError); !ok {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		if !strings.ContainsAny(s, "{}") && out != s {
			t.Fatalf("%q became %q", s, out)
		}
		if _, err := formatMap(s, vars); err != nil {
			if _, ok := err.(*pyError); !ok {
				t.Fatalf("format_map error %T %v", err, err)
			}
		}
	})
}
