package rpcserver

import (
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// TestInferenceSessionErrors pins the checks of upstream's
// _load_model_definition (agent/agent.py) and ModelDefinition's validation
// (common/config.py) as the manager sees them: each a FAILURE named as
// upstream's exception, nothing created.
func TestInferenceSessionErrors(t *testing.T) {
	fake := newFakeKernels()
	_, c := kernelServer(t, fake, nil, nil)
	ctx := ctxTimeout(t)
	modelMount := obj("name", "llama", "vfid", "vf-1", "vfsubpath", ".", "host_path", "/vfroot/llama",
		"kernel_path", "/models", "mount_perm", "ro", "usage_mode", "model")
	service := func(port any) kv {
		return obj("models", []any{obj("name", "llama", "model_path", "/models",
			"service", obj("start_command", "python3 serve.py", "port", port))})
	}
	inference := func(kid, sid string) kv {
		return managerConfig(t, kid, sid, "cr.backend.ai/stable/python:3.11").with("session_type", kernel.SessionTypeInference).
			with("mounts", []any{modelMount}).with("internal_data", obj("model_definition", service(8000)))
	}
	cases := []struct {
		description string
		edit        func(kv) kv
		wantName    string
		wantText    string
	}{
		{description: "no model folder", wantName: "ModelFolderNotSpecifiedError", wantText: "model virtual folder",
			edit: func(c kv) kv { return c.with("mounts", []any{}) }},
		{description: "only a general folder", wantName: "ModelFolderNotSpecifiedError", wantText: "model virtual folder",
			edit: func(c kv) kv {
				return c.with("mounts", []any{obj("name", "data", "vfid", "abc", "vfsubpath", ".", "host_path", "/vfroot/data",
					"kernel_path", "/home/work/data", "mount_perm", "rw", "usage_mode", "general")})
			}},
		{description: "no internal_data", wantName: "ModelDefinitionNotFoundError", wantText: "vf-1",
			edit: func(c kv) kv { return c.with("internal_data", nil) }},
		{description: "an empty model_definition", wantName: "ModelDefinitionNotFoundError", wantText: "llama",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", obj())) }},
		{description: "no models", wantName: "ModelDefinitionEmptyError", wantText: "empty",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", obj("models", []any{}))) }},
		{description: "a bad field is named", wantName: "ModelDefinitionValidationError", wantText: "models.0.service.port: Input should be greater than 1",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", service(1))) }},
		{description: "a missing field is named", wantName: "ModelDefinitionValidationError", wantText: "models.0.model_path: Field required",
			edit: func(c kv) kv {
				return c.with("internal_data", obj("model_definition", obj("models", []any{obj("name", "x")})))
			}},
		{description: "port 2000 is reserved", wantName: "ReservedPortError", wantText: "reserved",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", service(2000))) }},
		{description: "port 2001 is reserved", wantName: "ReservedPortError", wantText: "reserved",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", service(2001))) }},
		{description: "a preopen port conflicts", wantName: "PortConflictError", wantText: "overlaps with built-in service 8000",
			edit: func(c kv) kv { return c.with("preopen_ports", []any{8000}) }},
		{description: "sshd's port conflicts", wantName: "PortConflictError", wantText: "sshd",
			edit: func(c kv) kv { return c.with("internal_data", obj("model_definition", service(2200))) }},
		{description: "an allocated host port conflicts", wantName: "PortConflictError", wantText: "hostport1",
			edit: func(c kv) kv { return c.with("allocated_host_ports", []any{8000}) }},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			kid, sid := randomUUID(), randomUUID()
			got, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: tc.edit(inference(kid, sid))}, nil), nil)
			wantFailure(t, tc.description, got, err, tc.wantName, tc.wantText)
		})
	}
	fake.mu.Lock()
	if n := len(fake.requests); n != 0 {
		t.Errorf("%d kernels were created despite the errors", n)
	}
	fake.mu.Unlock()

	t.Run("a valid definition reaches the kernel manager", func(t *testing.T) {
		kid, sid := randomUUID(), randomUUID()
		if _, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: inference(kid, sid)}, nil), nil); err != nil {
			t.Fatalf("create_kernels: %v", err)
		}
		fake.mu.Lock()
		defer fake.mu.Unlock()
		req := fake.requests[len(fake.requests)-1]
		if d := req.ModelDefinition; d == nil || len(d.Models) != 1 || d.Models[0].Service.Port != 8000 || *d.Models[0].Service.Shell != "/bin/bash" {
			t.Fatalf("ModelDefinition %+v", d)
		}
	})
	t.Run("other session types ignore internal_data.model_definition", func(t *testing.T) {
		kid, sid := randomUUID(), randomUUID()
		cfg := managerConfig(t, kid, sid, "cr.backend.ai/stable/python:3.11").with("internal_data", obj("model_definition", service(2000)))
		if _, err := invokeRaw(ctx, c, "create_kernels", createArgs(t, sid, map[string]kv{kid: cfg}, nil), nil); err != nil {
			t.Fatalf("create_kernels: %v", err)
		}
	})
}
