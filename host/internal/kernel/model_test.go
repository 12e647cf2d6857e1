package kernel_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

func ptr[T any](v T) *T { return &v }

// TestDecodeModelDefinition pins upstream's ModelDefinition validation
// (common/config.py ModelDefinition, ModelConfig, ModelServiceConfig,
// ModelHealthCheck, BaseConfigModel's kebab-case aliases, and
// common/model_service_start_command_compat.py).
func TestDecodeModelDefinition(t *testing.T) {
	defaults := &protocol.ModelHealthCheck{Enable: true, Interval: 10, Path: "/health", MaxRetries: 10,
		MaxWaitTime: 15, ExpectedStatusCode: 200, InitialDelay: 60}
	cases := []struct {
		description string
		in          string
		want        protocol.ModelDefinition
		wantErr     error
		wantFields  []string // named in the error
	}{
		{description: "defaults: shell /bin/bash, no actions, health check defaults",
			in: `{"models": [{"name": "m", "model_path": "/models", "service": {"start_command": "run", "port": 8000, "health_check": {"enable": true}}}]}`,
			want: protocol.ModelDefinition{Models: []protocol.ModelInfo{{Name: "m", ModelPath: "/models", Service: &protocol.ModelService{
				PreStartActions: []protocol.PreStartAction{}, StartCommand: ptr("run"), Shell: ptr("/bin/bash"), Port: 8000, HealthCheck: defaults}}}}},
		{description: "kebab-case aliases, lax numbers and bools, null shell",
			in: `{"models": [{"name": "m", "model-path": "/m", "service": {"start-command": ["a b", "c"], "shell": null, "port": "8000",
				"pre-start-actions": [{"action": "log", "args": {"message": "hi"}}],
				"health-check": {"enable": "yes", "max-retries": 2.0, "max-wait-time": 1, "interval": "0.5", "initial-delay": 0, "expected-status-code": 204, "path": "/ok"}}}]}`,
			want: protocol.ModelDefinition{Models: []protocol.ModelInfo{{Name: "m", ModelPath: "/m", Service: &protocol.ModelService{
				PreStartActions: []protocol.PreStartAction{{Action: "log", Args: map[string]any{"message": "hi"}}},
				StartCommand:    ptr(`'a b' c`), Port: 8000,
				HealthCheck: &protocol.ModelHealthCheck{Enable: true, Interval: 0.5, Path: "/ok", MaxRetries: 2, MaxWaitTime: 1, ExpectedStatusCode: 204}}}}}},
		{description: "command wins over start_command; no service and metadata are fine",
			in: `{"models": [{"name": "a", "model_path": "/a", "service": {"command": "x", "start_command": "y", "port": 2}},
				{"name": "b", "model_path": "/b", "metadata": {"author": "me", "version": 3, "framework": ["vllm"]}}]}`,
			want: protocol.ModelDefinition{Models: []protocol.ModelInfo{
				{Name: "a", ModelPath: "/a", Service: &protocol.ModelService{PreStartActions: []protocol.PreStartAction{}, StartCommand: ptr("x"), Shell: ptr("/bin/bash"), Port: 2}},
				{Name: "b", ModelPath: "/b"}}}},
		{description: "no start command: the image's Cmd later",
			in: `{"models": [{"name": "a", "model_path": "/a", "service": {"port": 9000}}]}`,
			want: protocol.ModelDefinition{Models: []protocol.ModelInfo{{Name: "a", ModelPath: "/a",
				Service: &protocol.ModelService{PreStartActions: []protocol.PreStartAction{}, Shell: ptr("/bin/bash"), Port: 9000}}}}},
		{description: "no models is ModelDefinitionEmptyError", in: `{"models": []}`, wantErr: kernel.ErrModelDefinitionEmpty},
		{description: "no models key is ModelDefinitionEmptyError", in: `{}`, wantErr: kernel.ErrModelDefinitionEmpty},
		{description: "not a dict", in: `[1]`, wantErr: kernel.ErrModelDefinitionInvalid},
		{description: "every bad field is named",
			in: `{"models": [{"model_path": 3, "service": {"port": 1, "health_check": {"expected_status_code": 100, "initial_delay": -1, "enable": "maybe"},
				"pre_start_actions": [{"args": []}]}}]}`,
			wantErr: kernel.ErrModelDefinitionInvalid,
			wantFields: []string{"models.0.name: Field required", "models.0.model_path: Input should be a valid string",
				"models.0.service.port: Input should be greater than 1", "models.0.service.health_check.expected_status_code",
				"models.0.service.health_check.initial_delay", "models.0.service.health_check.enable",
				"models.0.service.pre_start_actions.0.action: Field required", "models.0.service.pre_start_actions.0.args"}},
		{description: "port is required", in: `{"models": [{"name": "a", "model_path": "/a", "service": {}}]}`,
			wantErr: kernel.ErrModelDefinitionInvalid, wantFields: []string{"models.0.service.port: Field required"}},
		{description: "a fractional port", in: `{"models": [{"name": "a", "model_path": "/a", "service": {"port": 80.5}}]}`,
			wantErr: kernel.ErrModelDefinitionInvalid, wantFields: []string{"models.0.service.port"}},
		{description: "models not a list", in: `{"models": {"name": "a"}}`,
			wantErr: kernel.ErrModelDefinitionInvalid, wantFields: []string{"models: Input should be a valid list"}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := kernel.DecodeModelDefinitionJSON([]byte(tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				for _, f := range tc.wantFields {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("error %q does not name %q", err, f)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Fatalf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// TestModelServicePorts pins _load_model_definition's ports
// (agent/agent.py): "<model>-<port>" preopen inference ports, 2000/2001
// reserved, overlaps refused.
func TestModelServicePorts(t *testing.T) {
	def := func(ports ...int) protocol.ModelDefinition {
		var d protocol.ModelDefinition
		for i, p := range ports {
			d.Models = append(d.Models, protocol.ModelInfo{Name: string(rune('a' + i)), Service: &protocol.ModelService{Port: p}})
		}
		d.Models = append(d.Models, protocol.ModelInfo{Name: "noservice"})
		return d
	}
	sshd := kernel.WithIntrinsicServicePorts(nil)
	cases := []struct {
		description string
		def         protocol.ModelDefinition
		want        []kernel.ServicePort
		wantErr     error
	}{
		{description: "one port per model service", def: def(8000, 8001),
			want: append(append([]kernel.ServicePort{}, sshd...),
				kernel.ServicePort{Name: "a-8000", Protocol: "preopen", Ports: []int{8000}, IsInference: true},
				kernel.ServicePort{Name: "b-8001", Protocol: "preopen", Ports: []int{8001}, IsInference: true})},
		{description: "2000 is reserved", def: def(2000), wantErr: kernel.ErrReservedPort},
		{description: "2001 is reserved", def: def(2001), wantErr: kernel.ErrReservedPort},
		{description: "sshd's port conflicts", def: def(2200), wantErr: kernel.ErrPortConflict},
		{description: "ttyd's port conflicts", def: def(7681), wantErr: kernel.ErrPortConflict},
		{description: "two models on one port conflict", def: def(8000, 8000), wantErr: kernel.ErrPortConflict},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := kernel.ModelServicePorts(tc.def, sshd)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestModelsToStart pins upstream's _apply_image_cmd_fallback and
// _append_legacy_inference_env_args (agent/agent.py) with
// agent/legacy_inference_env.py's flags.
func TestModelsToStart(t *testing.T) {
	model := func(name string, cmd *string) protocol.ModelInfo {
		return protocol.ModelInfo{Name: name, ModelPath: "/m", Service: &protocol.ModelService{StartCommand: cmd, Port: 8000}}
	}
	cases := []struct {
		description string
		models      []protocol.ModelInfo
		imageCmd    []string
		env         map[string]string
		want        []string // start commands
		wantErr     bool
	}{
		{description: "the command as given", models: []protocol.ModelInfo{model("a", ptr("serve"))}, want: []string{"serve"}},
		{description: "no command takes the image's Cmd", models: []protocol.ModelInfo{model("a", nil)},
			imageCmd: []string{"python3", "-m", "my app"}, want: []string{`python3 -m 'my app'`}},
		{description: "no command and no Cmd is skipped, as a model without a service",
			models: []protocol.ModelInfo{model("a", nil), {Name: "b"}}, want: nil},
		{description: "VLLM_*/SGLANG_* become flags, extra args last",
			models: []protocol.ModelInfo{model("a", ptr("vllm serve /m"))},
			env: map[string]string{"VLLM_TP_SIZE": "2", "VLLM_QUANTIZATION": "awq", "SGLANG_PP_SIZE": "3",
				"VLLM_EXTRA_ARGS": "--max-model-len 4096 --name 'a b'", "OTHER": "x"},
			want: []string{`vllm serve /m --quantization awq --tensor-parallel-size 2 --pipeline-parallel-size 3 --max-model-len 4096 --name 'a b'`}},
		{description: "malformed quoting fails", models: []protocol.ModelInfo{model("a", ptr("x"))},
			env: map[string]string{"SGLANG_EXTRA_ARGS": "'open"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := kernel.ModelsToStart(protocol.ModelDefinition{Models: tc.models}, tc.imageCmd, tc.env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var cmds []string
			for _, m := range got {
				cmds = append(cmds, *m.Service.StartCommand)
			}
			if !reflect.DeepEqual(cmds, tc.want) {
				t.Fatalf("commands %q, want %q", cmds, tc.want)
			}
		})
	}
	// The definition itself is left alone.
	def := protocol.ModelDefinition{Models: []protocol.ModelInfo{model("a", nil)}}
	if _, err := kernel.ModelsToStart(def, []string{"x"}, nil); err != nil || def.Models[0].Service.StartCommand != nil {
		t.Fatalf("ModelsToStart changed its input: %v", err)
	}
}

// FuzzDecodeModelDefinition: any JSON either fails with a named
// model-definition error or decodes into a definition whose ports and
// health checks are in range, and which decodes again to itself.
func FuzzDecodeModelDefinition(f *testing.F) {
	for _, seed := range []string{
		`{"models": [{"name": "m", "model_path": "/m", "service": {"start_command": "x", "port": 8000, "health_check": {"enable": true}}}]}`,
		`{"models": [{"name": "m", "model-path": "/m", "service": {"command": ["a"], "port": "9", "shell": null, "pre_start_actions": [{"action": "log", "args": {}}]}}]}`,
		`{"models": []}`, `[]`, `null`, `{"models": [{"service": {"port": 1e3}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		def, err := kernel.DecodeModelDefinitionJSON(data)
		if err != nil {
			if !errors.Is(err, kernel.ErrModelDefinitionInvalid) && !errors.Is(err, kernel.ErrModelDefinitionEmpty) {
				t.Fatalf("unnamed error %v", err)
			}
			return
		}
		if len(def.Models) == 0 {
			t.Fatal("an empty definition was accepted")
		}
		for _, m := range def.Models {
			if s := m.Service; s != nil {
				if s.Port <= 1 || s.Port > 65535 {
					t.Fatalf("port %d accepted", s.Port)
				}
				if hc := s.HealthCheck; hc != nil && (hc.ExpectedStatusCode <= 100 || hc.InitialDelay < 0) {
					t.Fatalf("health check %+v accepted", hc)
				}
			}
		}
		again, err := json.Marshal(def)
		if err != nil {
			t.Fatal(err)
		}
		def2, err := kernel.DecodeModelDefinitionJSON(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		a, _ := json.Marshal(def2)
		if string(a) != string(again) {
			t.Fatalf("round trip changed it:\n%s\n%s", again, a)
		}
	})
}
