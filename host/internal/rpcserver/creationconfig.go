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

// argError builds a Python-style argument error naming the argument path.
func argError(pyName, path, format string, args ...any) error {
	return &Error{Name: pyName, Err: fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))}
}

// fieldReader reads keys of one decoded dict, naming each failure by path.
type fieldReader struct {
	path string
	m    wiremsg.Map
}

func newFieldReader(path string, v any) (*fieldReader, error) {
	m, ok := v.(wiremsg.Map)
	if !ok {
		return nil, argError("TypeError", path, "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	return &fieldReader{path: path, m: m}, nil
}

func (r *fieldReader) sub(key string) string { return fmt.Sprintf("%s[%q]", r.path, key) }

// get returns the value and whether it is present and not None.
func (r *fieldReader) get(key string) (any, bool) {
	v, ok := r.m[key]
	return v, ok && v != nil
}

func (r *fieldReader) required(key string) (any, error) {
	v, ok := r.m[key]
	if !ok {
		return nil, argError("KeyError", r.path, "missing required key %q", key)
	}
	return v, nil
}

func (r *fieldReader) str(key string) (string, error) {
	v, ok := r.get(key)
	if !ok {
		return "", nil
	}
	return strValue(r.sub(key), v)
}

func strValue(path string, v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case wiremsg.UUID:
		return s.String(), nil
	case wiremsg.SlotName:
		return string(s), nil
	case wiremsg.PurePosixPath:
		return string(s), nil
	case wiremsg.PosixPath:
		return string(s), nil
	}
	return "", argError("TypeError", path, "must be str, not %s", wiremsg.PyTypeName(v))
}

func intValue(path string, v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case uint64:
		if n > math.MaxInt64 {
			return 0, argError("ValueError", path, "%d is out of range", n)
		}
		return int64(n), nil
	case wiremsg.BinarySize:
		return int64(n), nil
	}
	return 0, argError("TypeError", path, "must be int, not %s", wiremsg.PyTypeName(v))
}

func (r *fieldReader) int(key string, def int64) (int64, error) {
	v, ok := r.get(key)
	if !ok {
		return def, nil
	}
	return intValue(r.sub(key), v)
}

func (r *fieldReader) boolean(key string) (bool, error) {
	v, ok := r.get(key)
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, argError("TypeError", r.sub(key), "must be bool, not %s", wiremsg.PyTypeName(v))
	}
	return b, nil
}

func (r *fieldReader) strMap(key string) (map[string]string, error) {
	out := map[string]string{}
	v, ok := r.get(key)
	if !ok {
		return out, nil
	}
	m, isMap := v.(wiremsg.Map)
	if !isMap {
		return nil, argError("TypeError", r.sub(key), "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	for k, item := range m {
		name, err := strValue(r.sub(key)+" key", k)
		if err != nil {
			return nil, err
		}
		if item == nil {
			continue
		}
		s, err := strValue(fmt.Sprintf("%s[%q]", r.sub(key), name), item)
		if err != nil {
			return nil, err
		}
		out[name] = s
	}
	return out, nil
}

func (r *fieldReader) anyMap(key string) (map[string]any, error) {
	v, ok := r.get(key)
	if !ok {
		return nil, nil
	}
	return plainMap(r.sub(key), v)
}

// plainMap converts a decoded dict with str keys into map[string]any.
func plainMap(path string, v any) (map[string]any, error) {
	m, ok := v.(wiremsg.Map)
	if !ok {
		return nil, argError("TypeError", path, "must be dict, not %s", wiremsg.PyTypeName(v))
	}
	out := make(map[string]any, len(m))
	for k, item := range m {
		name, err := strValue(path+" key", k)
		if err != nil {
			return nil, err
		}
		out[name] = item
	}
	return out, nil
}

func (r *fieldReader) list(key string) ([]any, error) {
	v, ok := r.get(key)
	if !ok {
		return nil, nil
	}
	l, isList := v.([]any)
	if !isList {
		return nil, argError("TypeError", r.sub(key), "must be a list, not %s", wiremsg.PyTypeName(v))
	}
	return l, nil
}

func (r *fieldReader) intList(key string) ([]int, error) {
	l, err := r.list(key)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(l))
	for i, item := range l {
		n, err := intValue(fmt.Sprintf("%s[%d]", r.sub(key), i), item)
		if err != nil {
			return nil, err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, argError("ValueError", fmt.Sprintf("%s[%d]", r.sub(key), i), "%d is out of range", n)
		}
		out = append(out, int(n))
	}
	return out, nil
}

func (r *fieldReader) strList(key string) ([]string, error) {
	l, err := r.list(key)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(l))
	for i, item := range l {
		s, err := strValue(fmt.Sprintf("%s[%d]", r.sub(key), i), item)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// enumValue reads an enum that arrives as a pickled member (ext 6) or, from
// older or JSON-speaking callers, as its plain value. CPython 3.11 pickles
// members by name; a name maps to the value by lower-casing and turning
// "_" into "-", which holds for AutoPullBehavior, SessionTypes and
// ClusterMode.
func enumValue(path string, v any, class string, allowed ...string) (string, error) {
	var s string
	switch e := v.(type) {
	case wiremsg.Enum:
		if e.Class != class {
			return "", argError("TypeError", path, "must be %s, not %s.%s", class, e.Module, e.Class)
		}
		if value, ok := e.Value.(string); ok {
			s = value
		} else {
			s = strings.ReplaceAll(strings.ToLower(e.Name), "_", "-")
		}
	case string:
		s = e
	default:
		return "", argError("TypeError", path, "must be %s or str, not %s", class, wiremsg.PyTypeName(v))
	}
	if len(allowed) > 0 {
		for _, a := range allowed {
			if s == a {
				return s, nil
			}
		}
		return "", argError("ValueError", path, "%q is not a valid %s (want one of %s)", s, class, strings.Join(allowed, ", "))
	}
	return s, nil
}

func (r *fieldReader) enum(key, class, def string, allowed ...string) (string, error) {
	v, ok := r.get(key)
	if !ok {
		return def, nil
	}
	return enumValue(r.sub(key), v, class, allowed...)
}

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
		for k, d := range x {
			if d.IsNegative() {
				return nil, argError("ValueError", fmt.Sprintf("%s[%q]", path, k), "amount %s is negative", d)
			}
			out[k] = d
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

// canonicalKernelID parses a kernel or session id the way upstream's
// UUID(raw) does (dashed or 32 hex digits) and returns the dashed form.
func canonicalKernelID(method, name string, v any) (string, error) {
	if u, ok := v.(wiremsg.UUID); ok {
		return u.String(), nil
	}
	s, err := argString(method, name, v)
	if err != nil {
		return "", err
	}
	u, err := wiremsg.ParseUUID(s)
	if err != nil {
		return "", &Error{Name: "ValueError", Err: fmt.Errorf("%s(): argument '%s': badly formed UUID string %q", method, name, s)}
	}
	return u.String(), nil
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
