// Package pluginhost finds, launches and supervises compute plugin processes.
//
// Each plugin runs as its own process behind go-plugin (gRPC, AutoMTLS, an
// explicit environment). The host keeps the last good description and device
// list of every plugin, restarts a crashed plugin with backoff while kernels
// keep running, and stops plugins an earlier, killed agent left behind.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/proto/sdk"
)

// SupportedAPIVersions are the plugin API versions this agent speaks.
var supportedAPIVersions = []string{sdk.APIVersion}

// Options configure a Host.
type Options struct {
	// Dirs are searched in order for baiagent-plugin-<name> executables.
	Dirs   []string
	Policy Policy
	// Checksums maps a plugin name to "sha256:<hex>"; a listed plugin whose
	// file does not match is refused.
	Checksums map[string]string
	// StartTimeout bounds the handshake (everything a plugin does before it
	// serves). Zero means 2 minutes: NVML init can be slow.
	StartTimeout time.Duration
	// CallTimeout bounds each call to a plugin. Zero means 30 seconds.
	CallTimeout time.Duration
	// HealthInterval is how often a running plugin is asked grpc.health.v1
	// Check; two failed checks in a row restart it. Zero means 5 seconds.
	HealthInterval time.Duration
	// RuntimeDir holds plugin sockets (kept short: sun_path is ~108 bytes)
	// and pid records. It is created when missing.
	RuntimeDir string
	// WorkDir is the plugins' working directory, so relative paths in their
	// configuration resolve against agent.toml's directory. Default: RuntimeDir.
	WorkDir string
	// PluginConfig holds each plugin's configuration table by plugin name.
	PluginConfig map[string]map[string]any
	// Env is added to the explicit environment of every plugin process.
	Env   []string
	Agent sdk.AgentInfo
	// Backoff bounds restart delays. Zero values mean 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 zerolog.Logger
}

func (o *Options) setDefaults() {
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 5 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
}

// Host supervises the compute plugins of one agent.
type Host struct {
	opts      Options
	log       zerolog.Logger
	instances []*instance

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// keysMu guards keyOwner: which plugin owns each resource kind.
	keysMu   sync.Mutex
	keyOwner map[string]string
}

// New prepares a host; Start launches the plugins.
func New(opts Options) *Host {
	opts.setDefaults()
	return &Host{opts: opts, log: opts.Logger, keyOwner: map[string]string{}}
}

// Start stops stale plugin processes, discovers plugins, launches every
// allowed one in parallel and waits until each is running or has failed.
// Plugins that fail are reported in Statuses, never returned as an error:
// the error is for problems of the host itself (an unreadable plugin dir).
func (h *Host) Start(ctx context.Context) error {
	if h.opts.RuntimeDir == "" {
		return errors.New("plugin runtime dir is not set")
	}
	if err := os.MkdirAll(h.opts.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("create plugin runtime dir: %w", err)
	}
	stale, err := cleanupStale(h.opts.RuntimeDir)
	if err != nil {
		return fmt.Errorf("look for stale plugins: %w", err)
	}
	for _, sp := range stale {
		h.log.Warn().Str("plugin", sp.Name).Int("pid", sp.PID).Bool("killed", sp.Killed).Str("detail", sp.Reason).
			Msg("found a plugin process left by an earlier agent")
	}
	candidates, err := Discover(h.opts.Dirs)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	for _, c := range candidates {
		h.instances = append(h.instances, newInstance(h, c))
	}
	// Launch and describe in parallel; claim kinds in name order afterwards
	// so that which of two conflicting plugins wins does not depend on timing.
	var wg sync.WaitGroup
	for _, inst := range h.instances {
		state, reason := h.opts.Policy.Decide(inst.cand.Name)
		if state != StateRunning {
			inst.setState(state, reason)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.launchAndDescribe(ctx)
		}()
	}
	wg.Wait()
	for _, inst := range h.instances {
		if inst.launched() {
			inst.claimKinds()
		}
	}
	for _, inst := range h.instances {
		if !inst.launched() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.configureAndList(ctx)
		}()
	}
	wg.Wait()
	for _, inst := range h.instances {
		if inst.supervised() {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				inst.supervise(runCtx)
			}()
		}
	}
	return nil
}

// Stop stops every plugin process and waits for the supervisors to end.
func (h *Host) Stop() {
	if h.cancel != nil {
		h.cancel()
	}
	h.wg.Wait()
	var wg sync.WaitGroup
	for _, inst := range h.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst.stop()
		}()
	}
	wg.Wait()
}

// Statuses returns a snapshot of every discovered plugin, sorted by name.
func (h *Host) Statuses() []Status {
	out := make([]Status, 0, len(h.instances))
	for _, inst := range h.instances {
		out = append(out, inst.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Plugin returns the client of a running plugin and its description.
func (h *Host) Plugin(name string) (sdk.Plugin, sdk.Description, bool) {
	for _, inst := range h.instances {
		if inst.cand.Name == name {
			return inst.client()
		}
	}
	return nil, sdk.Description{}, false
}

// Devices returns the last device list a plugin reported.
func (h *Host) Devices(name string) ([]sdk.Device, bool) {
	for _, inst := range h.instances {
		if inst.cand.Name == name {
			return inst.deviceList()
		}
	}
	return nil, false
}

// claim records that plugin owns every kind in keys, or says who already
// owns one of them.
func (h *Host) claim(plugin string, keys []string) error {
	h.keysMu.Lock()
	defer h.keysMu.Unlock()
	for _, k := range keys {
		if owner, ok := h.keyOwner[k]; ok && owner != plugin {
			return fmt.Errorf("resource kind %q is already provided by plugin %q", k, owner)
		}
	}
	for _, k := range keys {
		h.keyOwner[k] = plugin
	}
	return nil
}

// NegotiateAPIVersion picks the highest version both the plugin and this
// agent speak; versions must match exactly (the API major is checked at
// the handshake already).
func NegotiateAPIVersion(plugin []string) (string, error) {
	best := ""
	for _, v := range plugin {
		for _, ours := range supportedAPIVersions {
			if v == ours && (best == "" || versionLess(best, v)) {
				best = v
			}
		}
	}
	if best == "" {
		return "", fmt.Errorf("no common plugin API version: plugin speaks [%s], agent speaks [%s]",
			strings.Join(plugin, ", "), strings.Join(supportedAPIVersions, ", "))
	}
	return best, nil
}

// versionLess compares dotted numeric versions ("1.0" < "1.10").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// Running returns the description and devices of every running plugin,
// sorted by name.
func (h *Host) Running() []RunningPlugin {
	var out []RunningPlugin
	for _, inst := range h.instances {
		if _, desc, ok := inst.client(); ok {
			devs, _ := inst.deviceList()
			out = append(out, RunningPlugin{Name: inst.cand.Name, Description: desc, Devices: devs})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RunningPlugin is one running plugin's description and devices.
type RunningPlugin struct {
	Name        string
	Description sdk.Description
	Devices     []sdk.Device
}
