package session

import (
	"maps"
	"testing"

	"github.com/baiagent/baiagent/host/internal/kernel"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// internal_data and the user fields as upstream's agent reads them
// (agent/agent.py mount_vfolders, create_kernel; agent/docker/agent.py
// prepare_container), from the decoded config onto the kernel request
// (rpcserver's TestDecodeInternalData reads the same internal_data off the
// wire).
func TestCreationRequestInternalData(t *testing.T) {
	mounts := []sessionapi.VFolderMount{{Name: "data", HostPath: "/vf/data", KernelPath: "/home/work/data"}, {Name: ".logs", HostPath: "/vf/logs", KernelPath: "/home/work/.logs"}}
	cases := []struct {
		description string
		internal    sessionapi.InternalData
		uid, gid    int
		check       func(t *testing.T, req kernel.CreateRequest)
	}{
		{description: "mounts and BACKENDAI_PERSISTENT_PATHS", uid: -1, gid: -1,
			check: func(t *testing.T, req kernel.CreateRequest) {
				if len(req.Mounts) != 2 || req.Env["BACKENDAI_PERSISTENT_PATHS"] != "/home/work/data:/home/work/.logs" || req.UID != nil || req.MainGID != nil {
					t.Errorf("%+v", req)
				}
			}},
		{description: "prevent_vfolder_mounts keeps .logs only; the paths still name all", uid: -1, gid: -1, internal: sessionapi.InternalData{PreventVFolders: true},
			check: func(t *testing.T, req kernel.CreateRequest) {
				if len(req.Mounts) != 1 || req.Mounts[0] != (scratch.Mount{Source: "/vf/logs", Target: "/home/work/.logs"}) ||
					req.Env["BACKENDAI_PERSISTENT_PATHS"] != "/home/work/data:/home/work/.logs" {
					t.Errorf("%+v", req)
				}
			}},
		{description: "uid, main_gid, sudo, block_service_ports, dotfiles, docker credentials", uid: 2000, gid: 3000, internal: sessionapi.InternalData{
			Sudo: true, BlockServicePorts: true,
			Dotfiles:          []sessionapi.Dotfile{{Path: ".bashrc", Perm: "644", Data: "x"}},
			DockerCredentials: []byte(`{"cr.example.com":{"password":"p","username":"u"}}`)},
			check: func(t *testing.T, req kernel.CreateRequest) {
				if req.UID == nil || *req.UID != 2000 || req.MainGID == nil || *req.MainGID != 3000 || !req.SudoSession || !req.BlockServicePorts ||
					len(req.Dotfiles) != 1 || req.Dotfiles[0] != (kernel.Dotfile{Path: ".bashrc", Perm: "644", Data: "x"}) ||
					string(req.DockerCredentials) != `{"cr.example.com":{"password":"p","username":"u"}}` {
					t.Errorf("%+v (creds %s)", req, req.DockerCredentials)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			cfg := sessionapi.KernelCreationConfig{Mounts: mounts, Environ: map[string]string{"A": "1"}, UID: tc.uid, MainGID: tc.gid, Internal: tc.internal}
			tc.check(t, creationRequest("k", "s", "img", cfg))
		})
	}
}

// TestCreationRequestImageLabels: image.labels reach the kernel manager,
// which reads features, envs.corecount and endpoint-ports from them as
// upstream's create_kernel does (agent/agent.py, 26.8.1).
func TestCreationRequestImageLabels(t *testing.T) {
	labels := map[string]string{"ai.backend.envs.corecount": "OMP_NUM_THREADS", "ai.backend.features": "uid-match"}
	req := creationRequest("k", "s", "img", sessionapi.KernelCreationConfig{UID: -1, MainGID: -1, Image: sessionapi.ImageConfig{Labels: labels}})
	if !maps.Equal(req.ImageLabels, labels) {
		t.Errorf("ImageLabels %v, want %v", req.ImageLabels, labels)
	}
}
