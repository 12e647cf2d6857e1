package rpcserver

import (
	"reflect"
	"strings"
	"testing"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// internal_data as upstream's agent reads it off the wire (agent/agent.py
// mount_vfolders, create_kernel; agent/docker/agent.py prepare_container);
// session's TestCreationRequestInternalData maps the result onto the
// kernel request.
func TestDecodeInternalData(t *testing.T) {
	cases := []struct {
		description string
		internal    map[string]any
		want        sessionapi.InternalData
		wantErr     string
	}{
		{description: "nothing set", internal: map[string]any{}},
		{description: "prevent_vfolder_mounts", internal: map[string]any{"prevent_vfolder_mounts": true},
			want: sessionapi.InternalData{PreventVFolders: true}},
		{description: "sudo, block_service_ports, dotfiles, docker credentials", internal: map[string]any{
			"sudo_session_enabled": true, "block_service_ports": true,
			"dotfiles":           []any{wiremsg.Map{"path": ".bashrc", "perm": "644", "data": "x"}},
			"docker_credentials": wiremsg.Map{"cr.example.com": wiremsg.Map{"username": "u", "password": []byte("p")}}},
			want: sessionapi.InternalData{Sudo: true, BlockServicePorts: true,
				Dotfiles:          []sessionapi.Dotfile{{Path: ".bashrc", Perm: "644", Data: "x"}},
				DockerCredentials: []byte(`{"cr.example.com":{"password":"p","username":"u"}}`)}},
		{description: "dotfiles not a list", internal: map[string]any{"dotfiles": "x"}, wantErr: "must be list"},
		{description: "a dotfile without perm", internal: map[string]any{"dotfiles": []any{wiremsg.Map{"path": "a", "data": "x"}}}, wantErr: "perm"},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			got, err := decodeInternalData(tc.internal)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v (creds %s)\nwant %+v", got, got.DockerCredentials, tc.want)
			}
		})
	}
}
