package rpcserver

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// slotAmount parses one resource_slots value: a decimal string (ResourceSlot
// to_json), a Decimal, an int or a BinarySize; floats are accepted as
// Python's Decimal(str(x)) would take them.
func slotAmount(path string, v any) (decimal.Decimal, error) {
	var d decimal.Decimal
	switch x := v.(type) {
	case decimal.Decimal:
		d = x
	case string:
		parsed, err := decimal.NewFromString(strings.TrimSpace(x))
		if err != nil {
			return d, argError("ValueError", path, "invalid decimal %q", x)
		}
		d = parsed
	case int64:
		d = decimal.NewFromInt(x)
	case uint64:
		d = decimal.NewFromUint64(x)
	case wiremsg.BinarySize:
		d = decimal.NewFromInt(int64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return d, argError("ValueError", path, "%v is not a finite amount", x)
		}
		d = decimal.NewFromFloat(x)
	default:
		return d, argError("TypeError", path, "must be a decimal string, not %s", wiremsg.PyTypeName(v))
	}
	if d.IsNegative() {
		return d, argError("ValueError", path, "amount %s is negative", d)
	}
	return d, nil
}

// resourceSlots reads resource_slots: a dict of decimal strings (the
// launcher's ResourceSlot.to_json()) or a pickled ResourceSlot (ext 8).
// None values are skipped as ResourceSlot.from_json does.
func resourceSlots(path string, v any) (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	switch x := v.(type) {
	case wiremsg.ResourceSlot:
		for _, s := range x {
			if s.Amount.IsNegative() {
				return nil, argError("ValueError", fmt.Sprintf("%s[%q]", path, s.Name), "amount %s is negative", s.Amount)
			}
			out[s.Name] = s.Amount
		}
		return out, nil
	case wiremsg.Map:
		for k, item := range x {
			name, err := strValue(path+" key", k)
			if err != nil {
				return nil, err
			}
			if name == "" {
				return nil, argError("ValueError", path, "empty slot name")
			}
			if item == nil {
				continue
			}
			d, err := slotAmount(fmt.Sprintf("%s[%q]", path, name), item)
			if err != nil {
				return nil, err
			}
			out[name] = d
		}
		return out, nil
	}
	return nil, argError("TypeError", path, "must be dict or ResourceSlot, not %s", wiremsg.PyTypeName(v))
}

func decodeImageConfig(path string, v any) (sessionapi.ImageConfig, error) {
	var img sessionapi.ImageConfig
	r, err := newFieldReader(path, v)
	if err != nil {
		return img, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"canonical", &img.Canonical}, {"project", &img.Project}, {"architecture", &img.Architecture},
		{"digest", &img.Digest}, {"repo_digest", &img.RepoDigest}} {
		if *f.dst, err = r.str(f.key); err != nil {
			return img, err
		}
	}
	if regValue, ok := r.get("registry"); ok {
		reg, err := newFieldReader(r.sub("registry"), regValue)
		if err != nil {
			return img, err
		}
		for _, f := range []struct {
			key string
			dst *string
		}{{"name", &img.Registry.Name}, {"url", &img.Registry.URL}, {"username", &img.Registry.Username}, {"password", &img.Registry.Password}} {
			if *f.dst, err = reg.str(f.key); err != nil {
				return img, err
			}
		}
	}
	if img.Labels, err = r.strMap("labels"); err != nil {
		return img, err
	}
	if img.IsLocal, err = r.boolean("is_local"); err != nil {
		return img, err
	}
	if img.AutoPull, err = r.enum("auto_pull", "AutoPullBehavior", "", sessionapi.AutoPullDigest, sessionapi.AutoPullTag, sessionapi.AutoPullNone); err != nil {
		return img, err
	}
	return img, nil
}

func decodeMount(path string, v any) (sessionapi.VFolderMount, error) {
	var m sessionapi.VFolderMount
	r, err := newFieldReader(path, v)
	if err != nil {
		return m, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &m.Name}, {"vfid", &m.VFID}, {"vfsubpath", &m.VFSubpath}, {"host_path", &m.HostPath},
		{"kernel_path", &m.KernelPath}, {"usage_mode", &m.UsageMode}} {
		if *f.dst, err = r.str(f.key); err != nil {
			return m, err
		}
	}
	if m.MountPerm, err = r.enum("mount_perm", "MountPermission", "ro", "ro", "rw", "wd"); err != nil {
		return m, err
	}
	if m.HostPath == "" || !strings.HasPrefix(m.HostPath, "/") {
		return m, argError("ValueError", r.sub("host_path"), "must be an absolute path, got %q", m.HostPath)
	}
	if m.KernelPath == "" || !strings.HasPrefix(m.KernelPath, "/") {
		return m, argError("ValueError", r.sub("kernel_path"), "must be an absolute path, got %q", m.KernelPath)
	}
	return m, nil
}

// DecodeKernelCreationConfig decodes one element of create_kernels'
// configs argument; path names it in errors (e.g. "configs[0]").
func DecodeKernelCreationConfig(path string, v any) (sessionapi.KernelCreationConfig, error) {
	cfg := sessionapi.KernelCreationConfig{UID: -1, MainGID: -1}
	r, err := newFieldReader(path, v)
	if err != nil {
		return cfg, err
	}
	imageValue, err := r.required("image")
	if err != nil {
		return cfg, err
	}
	if cfg.Image, err = decodeImageConfig(r.sub("image"), imageValue); err != nil {
		return cfg, err
	}
	slotsValue, err := r.required("resource_slots")
	if err != nil {
		return cfg, err
	}
	if cfg.ResourceSlots, err = resourceSlots(r.sub("resource_slots"), slotsValue); err != nil {
		return cfg, err
	}
	strFields := []struct {
		key string
		dst *string
	}{
		{"kernel_id", &cfg.KernelID}, {"session_id", &cfg.SessionID}, {"owner_user_id", &cfg.OwnerUserID},
		{"owner_project_id", &cfg.OwnerProjectID}, {"network_id", &cfg.NetworkID}, {"cluster_role", &cfg.ClusterRole},
		{"cluster_hostname", &cfg.ClusterHostname}, {"bootstrap_script", &cfg.BootstrapScript},
		{"startup_command", &cfg.StartupCommand}, {"scaling_group", &cfg.ScalingGroup}, {"agent_addr", &cfg.AgentAddr},
		{"endpoint_id", &cfg.EndpointID},
	}
	for _, f := range strFields {
		if *f.dst, err = r.str(f.key); err != nil {
			return cfg, err
		}
	}
	if cfg.AutoPull, err = r.enum("auto_pull", "AutoPullBehavior", "", sessionapi.AutoPullDigest, sessionapi.AutoPullTag, sessionapi.AutoPullNone); err != nil {
		return cfg, err
	}
	if cfg.AutoPull == "" {
		cfg.AutoPull = cfg.Image.AutoPull
	}
	if cfg.AutoPull == "" {
		cfg.AutoPull = sessionapi.AutoPullDigest
	}
	if cfg.SessionType, err = r.enum("session_type", "SessionTypes", "interactive"); err != nil {
		return cfg, err
	}
	if cfg.ClusterMode, err = r.enum("cluster_mode", "ClusterMode", "single-node", "single-node", "multi-node"); err != nil {
		return cfg, err
	}
	intFields := []struct {
		key string
		def int64
		dst *int
	}{{"cluster_idx", 0, &cfg.ClusterIdx}, {"local_rank", 0, &cfg.LocalRank}, {"uid", -1, &cfg.UID}, {"main_gid", -1, &cfg.MainGID}}
	for _, f := range intFields {
		n, err := r.int(f.key, f.def)
		if err != nil {
			return cfg, err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return cfg, argError("ValueError", r.sub(f.key), "%d is out of range", n)
		}
		*f.dst = int(n)
	}
	if cfg.IdleTimeout, err = r.int("idle_timeout", 0); err != nil {
		return cfg, err
	}
	if cfg.SupplementaryGIDs, err = r.intList("supplementary_gids"); err != nil {
		return cfg, err
	}
	if cfg.PreopenPorts, err = r.intList("preopen_ports"); err != nil {
		return cfg, err
	}
	for i, p := range cfg.PreopenPorts {
		if p < 1 || p > 65535 {
			return cfg, argError("ValueError", fmt.Sprintf("%s[%d]", r.sub("preopen_ports"), i), "port %d is out of range", p)
		}
	}
	if cfg.AllocatedHostPorts, err = r.intList("allocated_host_ports"); err != nil {
		return cfg, err
	}
	if cfg.PackageDirectory, err = r.strList("package_directory"); err != nil {
		return cfg, err
	}
	if cfg.Environ, err = r.strMap("environ"); err != nil {
		return cfg, err
	}
	if cfg.ResourceOpts, err = r.anyMap("resource_opts"); err != nil {
		return cfg, err
	}
	if cfg.ShmSize, err = shmemBytes(r.sub("resource_opts")+`["shmem"]`, cfg.ResourceOpts); err != nil {
		return cfg, err
	}
	if cfg.DenyFragmentation, err = denyFragmentation(r.sub("resource_opts")+`["allow_fractional_resource_fragmentation"]`, cfg.ResourceOpts); err != nil {
		return cfg, err
	}
	if cfg.InternalData, err = r.anyMap("internal_data"); err != nil {
		return cfg, err
	}
	if kp, ok := cfg.InternalData["ssh_keypair"]; ok && kp != nil {
		if cfg.UserSSHKeypair, err = decodeSSHKeypair(r.sub("internal_data")+"[\"ssh_keypair\"]", kp); err != nil {
			return cfg, err
		}
	}
	if cfg.Internal, err = decodeInternalData(cfg.InternalData); err != nil {
		return cfg, &Error{Name: "TypeError", Err: err}
	}
	// Upstream's `if not model_definition` (agent/agent.py
	// _load_model_definition): a falsy value is no definition.
	if raw := cfg.InternalData["model_definition"]; pyTruthy(raw) {
		cfg.ModelDefinition = wiremsg.ToJSON(raw)
	}
	mounts, err := r.list("mounts")
	if err != nil {
		return cfg, err
	}
	for i, item := range mounts {
		m, err := decodeMount(fmt.Sprintf("%s[%d]", r.sub("mounts"), i), item)
		if err != nil {
			return cfg, err
		}
		cfg.Mounts = append(cfg.Mounts, m)
	}
	return cfg, nil
}

// DecodeClusterInfo decodes create_kernels' cluster_info argument.
func DecodeClusterInfo(path string, v any) (sessionapi.ClusterInfo, error) {
	var ci sessionapi.ClusterInfo
	if v == nil {
		return ci, nil
	}
	r, err := newFieldReader(path, v)
	if err != nil {
		return ci, err
	}
	if ci.Mode, err = r.enum("mode", "ClusterMode", "single-node", "single-node", "multi-node"); err != nil {
		return ci, err
	}
	size, err := r.int("size", 0)
	if err != nil {
		return ci, err
	}
	if size < 0 || size > math.MaxInt32 {
		return ci, argError("ValueError", r.sub("size"), "%d is out of range", size)
	}
	ci.Size = int(size)
	if replicasValue, ok := r.get("replicas"); ok {
		replicas, err := plainMap(r.sub("replicas"), replicasValue)
		if err != nil {
			return ci, err
		}
		ci.Replicas = make(map[string]int, len(replicas))
		for role, n := range replicas {
			count, err := intValue(fmt.Sprintf("%s[%q]", r.sub("replicas"), role), n)
			if err != nil {
				return ci, err
			}
			ci.Replicas[role] = int(count)
		}
	}
	if ci.NetworkConfig, err = r.anyMap("network_config"); err != nil {
		return ci, err
	}
	if ci.NetworkName, err = r.str("network_name"); err != nil {
		return ci, err
	}
	if kpValue, ok := r.get("ssh_keypair"); ok && kpValue != nil {
		if ci.SSHKeypair, err = decodeSSHKeypair(r.sub("ssh_keypair"), kpValue); err != nil {
			return ci, err
		}
	}
	if ci.SSHPortMapping, err = r.anyMap("cluster_ssh_port_mapping"); err != nil {
		return ci, err
	}
	if v, ok := r.get("cluster_ssh_port_mapping"); ok {
		if ci.Hosts, err = decodeClusterHosts(r.sub("cluster_ssh_port_mapping"), v); err != nil {
			return ci, err
		}
	}
	return ci, nil
}

// decodeSSHKeypair decodes a {public_key, private_key} dict.
func decodeSSHKeypair(path string, v any) (*sessionapi.ClusterSSHKeyPair, error) {
	kp, err := newFieldReader(path, v)
	if err != nil {
		return nil, err
	}
	out := &sessionapi.ClusterSSHKeyPair{}
	if out.PublicKey, err = kp.str("public_key"); err != nil {
		return nil, err
	}
	if out.PrivateKey, err = kp.str("private_key"); err != nil {
		return nil, err
	}
	return out, nil
}

// pyTruthy is Python's truth of a decoded value (`if not inlined`).
func pyTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case int64:
		return x != 0
	case float64:
		return x != 0
	case []any:
		return len(x) > 0
	case wiremsg.Map:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// DecodeKernelImageRefs decodes kernel_image_refs: {KernelId(UUID): ImageRef}.
// Keys may also be UUID strings; the result is keyed by the dashed form.
func DecodeKernelImageRefs(path string, v any) (map[string]wiremsg.ImageRef, error) {
	out := map[string]wiremsg.ImageRef{}
	if v == nil {
		return out, nil
	}
	m, ok := v.(wiremsg.Map)
	if !ok {
		return nil, argError("TypeError", path, "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	keys := make([]string, 0, len(m))
	refs := map[string]any{}
	for k, item := range m {
		var id string
		switch key := k.(type) {
		case wiremsg.UUID:
			id = key.String()
		case string:
			u, err := wiremsg.ParseUUID(key)
			if err != nil {
				return nil, argError("ValueError", path, "key %q is not a kernel id", key)
			}
			id = u.String()
		default:
			return nil, argError("TypeError", path, "keys must be UUID, not %s", wiremsg.PyTypeName(k))
		}
		keys = append(keys, id)
		refs[id] = item
	}
	sort.Strings(keys)
	for _, id := range keys {
		ref, ok := refs[id].(wiremsg.ImageRef)
		if !ok {
			return nil, argError("TypeError", fmt.Sprintf("%s[%s]", path, id), "must be ImageRef, not %s", wiremsg.PyTypeName(refs[id]))
		}
		out[id] = ref
	}
	return out, nil
}
