package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
)

// Container settings every kernel gets, as upstream's
// agent/docker/agent.py builds its container config.
const (
	// DefaultContainerLogMaxLength is upstream's [container-logs]
	// max-length default (10M).
	DefaultContainerLogMaxLength = 10 << 20
	// containerLogFileCount is upstream's rotation count: max-size is the
	// max length split over this many files.
	containerLogFileCount = 5
	// nofileLimit is upstream's nofile soft and hard limit.
	nofileLimit = 1048576
	// ExtraContainerOptsName is the operator's extra container options
	// file, deep-merged into every container config.
	ExtraContainerOptsName = "agent-docker-container-opts.json"
	// maxExtraContainerOpts bounds what is read of one such file.
	maxExtraContainerOpts = 1 << 20
)

// ErrImageArchitectureMismatch is upstream's ImageArchitectureMismatchError:
// the image is built for another CPU architecture than the node's.
var ErrImageArchitectureMismatch = errors.New("image architecture mismatch")

// NodeArchitecture is the node's architecture as upstream's
// get_arch_name names it (platform.machine() with its aliases).
func NodeArchitecture() string { return normalizeArch(runtime.GOARCH) }

// normalizeArch maps Go's and Docker's architecture names onto upstream's
// (x86_64, aarch64, ...); other names pass unchanged.
func normalizeArch(arch string) string {
	switch arch {
	case "amd64", "x64", "x86_64":
		return "x86_64"
	case "arm64", "aarch64":
		return "aarch64"
	case "386", "x32", "i686", "x86":
		return "x86"
	}
	return arch
}

// CheckArchitecture refuses an image built for another architecture than
// the node's, as upstream's create_kernel does before any pull
// (agent/agent.py). An empty architecture is not checked.
func CheckArchitecture(imageArch string) error {
	if imageArch == "" {
		return nil
	}
	if node := NodeArchitecture(); normalizeArch(imageArch) != node {
		return fmt.Errorf("%w: cannot run %s image on %s machine", ErrImageArchitectureMismatch, imageArch, node)
	}
	return nil
}

// DefaultExtraContainerOptsFiles are the places upstream reads the extra
// container options from, in merge order: /etc/backend.ai, the agent
// user's ~/.config/backend.ai, and the working directory.
func DefaultExtraContainerOptsFiles() []string {
	files := []string{filepath.Join("/etc/backend.ai", ExtraContainerOptsName)}
	if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".config", "backend.ai", ExtraContainerOptsName))
	}
	if wd, err := os.Getwd(); err == nil {
		files = append(files, filepath.Join(wd, ExtraContainerOptsName))
	}
	return files
}

// kernelUlimits are upstream's nofile 1048576 and memlock unlimited (NCCL
// and RDMA pin memory), each lowered to what the agent process may have
// itself as upstream's get_safe_ulimit does: a Docker daemon that cannot
// raise a limit (a container, a capped service) would refuse to start the
// kernel otherwise.
func kernelUlimits() []*container.Ulimit {
	return []*container.Ulimit{
		safeUlimit("nofile", unix.RLIMIT_NOFILE, nofileLimit, nofileLimit),
		safeUlimit("memlock", unix.RLIMIT_MEMLOCK, -1, -1),
	}
}

// safeUlimit is get_safe_ulimit (agent/utils.py): -1 (unlimited) becomes
// the agent's own limit unless that is unlimited; a number is capped by
// it. When the agent's limits cannot be read the desired ones are used.
func safeUlimit(name string, resource int, soft, hard int64) *container.Ulimit {
	var cur unix.Rlimit
	if err := unix.Getrlimit(resource, &cur); err != nil {
		return &container.Ulimit{Name: name, Soft: soft, Hard: hard}
	}
	return &container.Ulimit{Name: name, Soft: capUlimit(soft, cur.Cur), Hard: capUlimit(hard, cur.Max)}
}

func capUlimit(desired int64, current uint64) int64 {
	infinite := current == unix.RLIM_INFINITY || current > math.MaxInt64
	switch {
	case infinite:
		return desired
	case desired == -1:
		return int64(current)
	}
	return min(desired, int64(current))
}

// kernelLogConfig is upstream's "local" log driver, rotated over
// containerLogFileCount files that hold maxLength together.
func kernelLogConfig(maxLength int64) container.LogConfig {
	if maxLength <= 0 {
		maxLength = DefaultContainerLogMaxLength
	}
	size := max(maxLength/containerLogFileCount, 1)
	return container.LogConfig{Type: "local", Config: map[string]string{
		"max-size": strconv.FormatInt(size, 10),
		"max-file": strconv.Itoa(containerLogFileCount),
		"compress": "false",
	}}
}

// timeMounts are the host's /etc/localtime and /etc/timezone, read-only,
// each when it exists (upstream's get_intrinsic_mounts on Linux).
func timeMounts(exists func(string) bool) []scratch.Mount {
	var out []scratch.Mount
	for _, p := range []string{"/etc/localtime", "/etc/timezone"} {
		if exists(p) {
			out = append(out, scratch.Mount{Source: p, Target: p, ReadOnly: true})
		}
	}
	return out
}

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// parseContainerOpts decodes one extra container options document: a JSON
// object in the Docker engine API's container-create shape.
func parseContainerOpts(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a JSON object, not %s", jsonKind(v))
	}
	return m, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// mergeNested is upstream's update_nested_dict: new keys are added,
// objects merge recursively, lists are extended, anything else is
// overwritten; an object or list met by another kind of value is an error
// naming the key's path.
func mergeNested(dst, add map[string]any, path string) error {
	keys := make([]string, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := add[k]
		at := k
		if path != "" {
			at = path + "." + k
		}
		cur, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		switch c := cur.(type) {
		case map[string]any:
			vm, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: cannot merge %s into an object", at, jsonKind(v))
			}
			if err := mergeNested(c, vm, at); err != nil {
				return err
			}
		case []any:
			vl, ok := v.([]any)
			if !ok {
				return fmt.Errorf("%s: cannot extend a list with %s", at, jsonKind(v))
			}
			dst[k] = append(c, vl...)
		default:
			dst[k] = v
		}
	}
	return nil
}

// readContainerOpts reads the operator's extra container options files
// that exist, in order. A file that exists but cannot be read or decoded
// fails the creation, naming the file.
func readContainerOpts(files []string) ([]map[string]any, []string, error) {
	var docs []map[string]any
	var used []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("extra container options %s: %w", name, err)
		}
		st, err := f.Stat()
		if err == nil && !st.Mode().IsRegular() {
			f.Close()
			continue // upstream reads only regular files (is_file)
		}
		data, err := io.ReadAll(io.LimitReader(f, maxExtraContainerOpts+1))
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("extra container options %s: %w", name, err)
		}
		if len(data) > maxExtraContainerOpts {
			return nil, nil, fmt.Errorf("extra container options %s: larger than %d bytes", name, maxExtraContainerOpts)
		}
		doc, err := parseContainerOpts(data)
		if err != nil {
			return nil, nil, fmt.Errorf("extra container options %s: %w", name, err)
		}
		docs = append(docs, doc)
		used = append(used, name)
	}
	return docs, used, nil
}

// applyContainerOpts deep-merges the documents into the container config
// (the engine API's create body: Config with HostConfig and
// NetworkingConfig inside) and decodes the result back.
func applyContainerOpts(cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig,
	docs []map[string]any, names []string) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	if len(docs) == 0 {
		return cfg, hostCfg, netCfg, nil
	}
	raw, err := json.Marshal(container.CreateRequest{Config: cfg, HostConfig: hostCfg, NetworkingConfig: netCfg})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container config: %w", err)
	}
	body, err := parseContainerOpts(raw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container config: %w", err)
	}
	for i, doc := range docs {
		if err := mergeNested(body, doc, ""); err != nil {
			return nil, nil, nil, fmt.Errorf("extra container options %s: %w", names[i], err)
		}
	}
	merged, err := json.Marshal(body)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container config: %w", err)
	}
	out := container.CreateRequest{}
	if err := json.Unmarshal(merged, &out); err != nil {
		return nil, nil, nil, fmt.Errorf("extra container options %v: %w", names, err)
	}
	if out.Config == nil {
		out.Config = &container.Config{}
	}
	if out.HostConfig == nil {
		out.HostConfig = &container.HostConfig{}
	}
	return out.Config, out.HostConfig, out.NetworkingConfig, nil
}

// withContainerOpts applies the operator's files to a container config.
func (m *Manager) withContainerOpts(_ context.Context, cfg *container.Config, hostCfg *container.HostConfig,
	netCfg *network.NetworkingConfig) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	files := m.cfg.ExtraContainerOptsFiles
	if files == nil {
		files = DefaultExtraContainerOptsFiles()
	}
	docs, names, err := readContainerOpts(files)
	if err != nil {
		return nil, nil, nil, err
	}
	return applyContainerOpts(cfg, hostCfg, netCfg, docs, names)
}

// ownContainers lists this agent's kernel containers, stopped ones too:
// those whose ai.backend.owner is the agent id (upstream finds its own
// containers by it; every container this build makes carries it), and,
// with legacy, those of older baiagent builds, which put the owner user id
// there and are found by ai.backend.agent-id. Only Recover and a registry
// still holding such a kernel need the second list: no container of an
// older build can appear while this agent runs, and each list makes
// Docker encode, and us decode, every kernel's labels.
func (m *Manager) ownContainers(ctx context.Context, legacy bool) ([]container.Summary, error) {
	var out []container.Summary
	seen := map[string]bool{}
	labels := []string{LabelOwner}
	if legacy {
		labels = append(labels, LabelAgentID)
	}
	for _, label := range labels {
		list, err := m.cfg.Engine.ContainerList(ctx, label+"="+m.cfg.AgentID)
		if err != nil {
			return nil, fmt.Errorf("list kernel containers: %w", err)
		}
		for _, c := range list {
			if !seen[c.ID] {
				seen[c.ID] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}
