package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// FileName is the name searched for when no path is given.
const FileName = "agent.toml"

// Env is everything Load takes from the process and the host, so tests can
// supply their own. SystemEnv returns the real one. A zero field means
// "unknown": a nil Lookup sees no variables, an empty HomeDir skips the home
// directory in the search, a nil LookupUserID rejects user names.
type Env struct {
	// Lookup reads an environment variable (os.LookupEnv).
	Lookup func(name string) (value string, set bool)
	// WorkDir resolves relative paths from defaults and the environment, and
	// is the first place searched for agent.toml.
	WorkDir string
	HomeDir string
	// SystemConfigDir is /etc/backend.ai, searched last.
	SystemConfigDir string
	// Hostname names the agent ("i-<hostname>") when agent.id is empty.
	Hostname string
	// UID is the agent's uid; root gets /run/baiagent/plugins and may use
	// the cgroup stats mode.
	UID int
	// Arch is runtime.GOARCH.
	Arch          string
	LookupUserID  func(name string) (int, error)
	LookupGroupID func(name string) (int, error)
}

// Value returns an environment variable and whether it is set; with a nil
// Lookup nothing is set.
func (e Env) Value(name string) (string, bool) {
	if e.Lookup == nil {
		return "", false
	}
	return e.Lookup(name)
}

// SystemEnv describes the running process. Facts it cannot learn stay empty;
// Load reports a problem only if it needs them.
func SystemEnv() Env {
	workDir, _ := os.Getwd()
	homeDir, _ := os.UserHomeDir()
	hostname, _ := os.Hostname()
	return Env{
		Lookup:          os.LookupEnv,
		WorkDir:         workDir,
		HomeDir:         homeDir,
		SystemConfigDir: "/etc/backend.ai",
		Hostname:        hostname,
		UID:             os.Getuid(),
		Arch:            runtime.GOARCH,
		LookupUserID: func(name string) (int, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return 0, fmt.Errorf("looking up user: %w", err)
			}
			return strconv.Atoi(u.Uid)
		},
		LookupGroupID: func(name string) (int, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return 0, fmt.Errorf("looking up group: %w", err)
			}
			return strconv.Atoi(g.Gid)
		},
	}
}

// SearchPaths lists where agent.toml is looked for, in upstream's order
// (common/config.py find_config_file): $BACKEND_CONFIG_FILE alone if set;
// otherwise ./agent.toml, then agent.toml in each parent of the working
// directory that lies within the home directory and holds a BUILD_ROOT file
// (a source checkout), then ~/.config/backend.ai/agent.toml, then
// /etc/backend.ai/agent.toml.
func SearchPaths(env Env) []string {
	if env.Lookup != nil {
		if path, set := env.Lookup(EnvConfigFile); set && path != "" {
			return []string{path}
		}
	}
	var paths []string
	if env.WorkDir != "" {
		paths = append(paths, filepath.Join(env.WorkDir, FileName))
		if env.HomeDir != "" {
			home := filepath.Clean(env.HomeDir)
			for dir := filepath.Dir(filepath.Clean(env.WorkDir)); isWithin(dir, home); dir = filepath.Dir(dir) {
				if isRegularFile(filepath.Join(dir, "BUILD_ROOT")) {
					paths = append(paths, filepath.Join(dir, FileName))
				}
				if dir == filepath.Dir(dir) {
					break // the filesystem root, when home is "/"
				}
			}
		}
	}
	if env.HomeDir != "" {
		paths = append(paths, filepath.Join(env.HomeDir, ".config", "backend.ai", FileName))
	}
	if env.SystemConfigDir != "" {
		paths = append(paths, filepath.Join(env.SystemConfigDir, FileName))
	}
	return paths
}

// Find returns the first existing file of SearchPaths, or an error wrapping
// ErrNotFound that lists the places searched.
func Find(env Env) (string, error) {
	paths := SearchPaths(env)
	for _, path := range paths {
		if isRegularFile(path) {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w (searched %s)", ErrNotFound, strings.Join(paths, ", "))
}

func isWithin(dir, root string) bool {
	rel, err := filepath.Rel(root, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func isRegularFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

// Load reads agent.toml from path, or from the first file of SearchPaths when
// path is empty, applies the environment overrides and validates the result.
// The warnings list keys that were accepted but have no effect. A bad file
// yields a *SyntaxError or a *ValidationError listing every problem.
func Load(path string, env Env) (*Config, []Warning, error) {
	if path == "" {
		found, err := Find(env)
		if err != nil {
			return nil, nil, err
		}
		path = found
	}
	if !filepath.IsAbs(path) && env.WorkDir != "" {
		path = filepath.Join(env.WorkDir, path)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(data, path, env)
}

// Limits on the input, checked before the TOML parser sees it: the parser
// takes time quadratic in the number of keys (a 1 MiB file of distinct keys
// takes 20 s), and a device such as /dev/zero never ends. Upstream's own
// files have under 100 keys and 5 KiB.
const (
	MaxFileSize = 1 << 20
	// MaxKeys bounds the '=' and '[' bytes, an over-estimate of the keys
	// and tables, which keeps parsing under 10 ms (without -race).
	MaxKeys = 2048
)

// readFile reads a regular file of at most MaxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("reading config: %s is not a regular file (%s)", path, info.Mode().Type())
	}
	if info.Size() > MaxFileSize {
		return nil, fmt.Errorf("reading config: %s is %d bytes, more than the %d an agent.toml may have", path, info.Size(), MaxFileSize)
	}
	// The file may grow between Stat and reading it; read at most one byte more.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("reading config: %s is more than the %d bytes an agent.toml may have", path, MaxFileSize)
	}
	return data, nil
}

// utf8BOM is stripped as Python's utf-8-sig codec and editors on Windows
// write it; TOML itself does not allow it.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkInput refuses input the parser would spend too long on.
func checkInput(data []byte, sourcePath string) error {
	name := sourcePath
	if name == "" {
		name = "agent.toml"
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("%s: %d bytes, more than the %d an agent.toml may have", name, len(data), MaxFileSize)
	}
	if n := bytes.Count(data, []byte("=")) + bytes.Count(data, []byte("[")); n > MaxKeys {
		return fmt.Errorf("%s: %d '=' and '[' (keys, tables, arrays), more than the %d an agent.toml may have", name, n, MaxKeys)
	}
	return nil
}

// Parse decodes and validates agent.toml contents. sourcePath is where the
// bytes came from: relative paths in them are resolved against its directory
// (against env.WorkDir when sourcePath is empty).
func Parse(data []byte, sourcePath string, env Env) (*Config, []Warning, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	if err := checkInput(data, sourcePath); err != nil {
		return nil, nil, err
	}
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		var decodeErr *toml.DecodeError
		if errors.As(err, &decodeErr) {
			line, column := decodeErr.Position()
			return nil, nil, &SyntaxError{Source: sourcePath, Line: line, Column: column, Context: decodeErr.String(), Err: err}
		}
		return nil, nil, fmt.Errorf("%s: decoding TOML: %w", sourcePath, err)
	}

	fileDir := env.WorkDir
	if sourcePath != "" {
		fileDir = filepath.Dir(sourcePath)
	}
	d := &decoder{fileDir: fileDir, env: env}
	cfg := defaults(env.WorkDir)
	cfg.SourcePath = sourcePath
	d.decodeRoot(newTable(d, "", raw), &cfg)
	d.complete(&cfg)
	d.validate(&cfg)
	d.warnNoEffect(&cfg)
	d.noteRelativePaths()

	if len(d.problems) > 0 {
		return nil, d.warnings, &ValidationError{Source: sourcePath, Problems: d.problems}
	}
	return &cfg, d.warnings, nil
}

// Dir is the directory of the config file, against which relative paths in
// it (including those in [plugins.*] tables) are meant.
func (c *Config) Dir() string {
	if c.SourcePath == "" {
		return ""
	}
	return filepath.Dir(c.SourcePath)
}

// warnNoEffect warns about keys that are read and printed, but that nothing
// in baiagent acts on yet, when they differ from upstream's default: the
// debug log switches, and a storage
// resource group (upstream then protects ttyd). Keys that only configure
// upstream's Python kernel runner (krunner-volumes, agent-sock-port) or are
// read by nothing upstream either (mount-path, instance-type beyond a log
// line) and stats-type (the same numbers either way) need no warning.
func (d *decoder) warnNoEffect(cfg *Config) {
	def := defaults(d.env.WorkDir)
	for _, c := range []struct {
		key       string
		isDefault bool
	}{
		{"agent.scaling-group-type", cfg.Agent.ScalingGroupType == def.Agent.ScalingGroupType},
		{"debug.log-stats", !cfg.Debug.LogStats},
		{"debug.log-kernel-config", !cfg.Debug.LogKernelConfig},
		{"debug.log-alloc-map", !cfg.Debug.LogAllocMap},
		{"debug.log-events", !cfg.Debug.LogEvents},
		{"debug.log-heartbeats", !cfg.Debug.LogHeartbeats},
		{"debug.log-docker-events", !cfg.Debug.LogDockerEvents},
	} {
		if !c.isDefault {
			d.warnings = append(d.warnings, Warning{Kind: WarnIgnoredKey, Key: c.key})
		}
	}
	// Upstream's logger applies these to [logging.file] (logging/logger.py).
	for _, name := range []string{EnvLogFile, EnvLogFileCount, EnvLogFileSize} {
		if _, set := d.env.Value(name); set {
			d.warnings = append(d.warnings, Warning{Kind: WarnIgnoredKey, Key: name,
				Message: "configures backend.ai-agent's file log driver; baiagent logs to stderr only, so it is ignored"})
		}
	}
}

// noteRelativePaths warns when the file's relative paths resolve elsewhere
// than upstream would put them. baiagent resolves them against the config
// file's directory, so a file works wherever the agent is started from;
// backend.ai-agent resolves them against its working directory. Both agree
// when the agent runs in the file's directory, as upstream's guides do.
func (d *decoder) noteRelativePaths() {
	if len(d.relativeKeys) == 0 || d.env.WorkDir == "" || filepath.Clean(d.env.WorkDir) == filepath.Clean(d.fileDir) {
		return
	}
	d.warnings = append(d.warnings, Warning{Kind: WarnNote, Key: strings.Join(d.relativeKeys, ", "),
		Message: fmt.Sprintf("relative paths resolved against the config file's directory %s, not the working directory %s as backend.ai-agent does",
			d.fileDir, d.env.WorkDir)})
}

// complete fills the defaults that depend on other values.
func (d *decoder) complete(cfg *Config) {
	if cfg.Agent.ID == "" {
		if d.env.Hostname == "" {
			d.fail("agent.id", "empty, and the hostname to derive it from is unknown")
		} else {
			cfg.Agent.ID = "i-" + d.env.Hostname
		}
	}
	if cfg.Agent.Region == "" {
		cfg.Agent.Region = d.defaultRegion()
	}
	if cfg.Etcd.Embedded && cfg.Etcd.DataDir == "" {
		cfg.Etcd.DataDir = filepath.Join(cfg.Agent.VarBasePath, "etcd")
	}
	if cfg.Agent.PluginRuntimeDir == "" {
		cfg.Agent.PluginRuntimeDir = d.defaultPluginRuntimeDir(cfg.Agent.IPCBasePath)
	}
}

// defaultRegion is upstream's on-premise get_instance_region
// (common/identity.py): $BACKEND_REGION, else "local". The manager stores
// the region in a NOT NULL column, so it is never left empty. Upstream asks
// a cloud's metadata service first when it detects one; baiagent does not.
func (d *decoder) defaultRegion() string {
	if d.env.Lookup != nil {
		if v, ok := d.env.Lookup(EnvRegion); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return DefaultRegion
}

// defaultPluginRuntimeDir prefers /run for root, then the user's runtime dir,
// then the IPC base path: all short, private, and cleaned at reboot or by the agent.
func (d *decoder) defaultPluginRuntimeDir(ipcBasePath string) string {
	if d.env.UID == 0 {
		return DefaultRootPluginRuntimeDir
	}
	if runtimeDir, set := d.env.Value(EnvXDGRuntimeDir); set && filepath.IsAbs(runtimeDir) {
		return filepath.Join(runtimeDir, "baiagent", "plugins")
	}
	return filepath.Join(ipcBasePath, "plugins")
}

// validate checks rules that span keys or depend on the host, as upstream's
// validators do.
func (d *decoder) validate(cfg *Config) {
	if cfg.Etcd.Namespace == "" {
		d.fail("etcd.namespace", "must not be empty")
	}
	if cfg.Etcd.Embedded && len(cfg.Etcd.Addrs) != 1 {
		d.fail("etcd.addr", "an embedded etcd listens on exactly one address, got %d", len(cfg.Etcd.Addrs))
	}

	pr := cfg.Container.PortRange
	switch {
	case pr.Min < 1 || pr.Min > 65535 || pr.Max < 1 || pr.Max > 65535:
		d.fail("container.port-range", "ports must be between 1 and 65535, got [%d, %d]", pr.Min, pr.Max)
	case pr.Min > pr.Max:
		d.fail("container.port-range", "min %d > max %d", pr.Min, pr.Max)
	}
	if cfg.Container.StatsType == StatsCgroup && d.env.UID != 0 {
		d.fail("container.stats-type", "cgroup stats need the agent to run as root")
	}
	// As upstream's _validate_scratch_type (config/unified.py): making and
	// mounting a loop filesystem needs root.
	if cfg.Container.ScratchType == ScratchHostFile {
		if d.env.UID != 0 {
			d.fail("container.scratch-type", "hostfile needs the agent to run as root (it makes and loop-mounts a filesystem per kernel)")
		}
		if cfg.Container.ScratchSize <= 0 {
			d.fail("container.scratch-size", "must be more than 0 with scratch-type hostfile (the size of each kernel's scratch filesystem)")
		}
	}

	switch cfg.Resource.AllocationMode {
	case AllocationShared, AllocationAutoSplit:
		if cfg.Resource.Allocations != nil {
			d.fail("resource.allocations", "only allowed when allocation-mode is manual, not %s", cfg.Resource.AllocationMode)
		}
	case AllocationManual:
		if cfg.Resource.Allocations == nil {
			d.fail("resource.allocations", "required (cpu and mem) when allocation-mode is manual")
		}
	}

	if dir := cfg.Agent.PluginRuntimeDir; len(dir) > maxPluginRuntimeDirLen {
		d.fail("agent.plugin-runtime-dir", "%q is %d bytes; keep it within %d so plugin socket paths fit the unix limit",
			dir, len(dir), maxPluginRuntimeDirLen)
	}
}
