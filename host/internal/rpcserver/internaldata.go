package rpcserver

import (
	"encoding/json"
	"fmt"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// decodeInternalData reads internal_data's dotfiles ([{path, perm, data}]),
// sudo_session_enabled, docker_credentials (kept as JSON for
// config/docker-creds.json), prevent_vfolder_mounts and
// block_service_ports. A value of the wrong shape is an error, as
// upstream's dotfile["path"] and the like would raise.
func decodeInternalData(m map[string]any) (sessionapi.InternalData, error) {
	var d sessionapi.InternalData
	truthy := func(k string) bool {
		switch v := m[k].(type) {
		case bool:
			return v
		case int64:
			return v != 0
		}
		return false
	}
	d.Sudo, d.PreventVFolders, d.BlockServicePorts = truthy("sudo_session_enabled"), truthy("prevent_vfolder_mounts"), truthy("block_service_ports")
	if raw, ok := m["dotfiles"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			return d, fmt.Errorf("internal_data[\"dotfiles\"]: must be list, not %s", wiremsg.PyTypeName(raw))
		}
		for i, item := range list {
			r, err := newFieldReader(fmt.Sprintf("internal_data[\"dotfiles\"][%d]", i), item)
			if err != nil {
				return d, err
			}
			var f sessionapi.Dotfile
			// Upstream indexes each key (dotfile["path"]): all three are required.
			for _, field := range []struct {
				key string
				dst *string
			}{{"path", &f.Path}, {"perm", &f.Perm}, {"data", &f.Data}} {
				v, err := r.required(field.key)
				if err != nil {
					return d, err
				}
				if *field.dst, err = strValue(r.sub(field.key), v); err != nil {
					return d, err
				}
			}
			d.Dotfiles = append(d.Dotfiles, f)
		}
	}
	if raw, ok := m["docker_credentials"]; ok && raw != nil {
		var err error
		if d.DockerCredentials, err = json.Marshal(wiremsg.ToJSON(raw)); err != nil {
			return d, fmt.Errorf("internal_data[\"docker_credentials\"]: %w", err)
		}
	}
	return d, nil
}
