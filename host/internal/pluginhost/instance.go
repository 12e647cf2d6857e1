package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/baiagent/baiagent/proto/sdk"
)

const (
	exitPollInterval = 100 * time.Millisecond
	pingTimeout      = 5 * time.Second
	// stderrTailLines is how much of a plugin's stderr a failure reports.
	stderrTailLines = 10
	// A plugin that stayed up this long gets its restart backoff reset.
	stableRunTime = time.Minute
)

// instance supervises one plugin executable.
type instance struct {
	host *Host
	cand Candidate
	log  zerolog.Logger

	mu     sync.Mutex
	status Status
	// proc is the current process; rpc its client while it may be called.
	proc    *Process
	rpc     *sdk.Client
	desc    sdk.Description
	devices []sdk.Device
	// permanent marks a failure a restart cannot fix (bad file, bad
	// description, bad configuration, a kind another plugin owns).
	permanent   bool
	watchCancel context.CancelFunc
	runningAt   time.Time
}

func newInstance(h *Host, c Candidate) *instance {
	return &instance{
		host:   h,
		cand:   c,
		log:    h.log.With().Str("plugin", c.Name).Logger(),
		status: Status{Name: c.Name, Path: c.Path, State: StateStarting},
	}
}

func (i *instance) setState(s State, reason string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.status.State = s
	i.status.Reason = reason
}

// fail records a failure and stops the process if one is running.
func (i *instance) fail(permanent bool, err error) {
	i.log.Error().Err(err).Bool("permanent", permanent).Msg("plugin failed")
	i.mu.Lock()
	i.status.State = StateFailed
	i.status.Reason = err.Error()
	i.permanent = i.permanent || permanent
	i.mu.Unlock()
	i.kill()
}

func (i *instance) snapshot() Status {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.status
	s.Keys = append([]string(nil), s.Keys...)
	s.Slots = append([]SlotInfo(nil), s.Slots...)
	return s
}

func (i *instance) launched() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.rpc != nil && i.status.State == StateStarting
}

func (i *instance) supervised() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return !i.permanent && (i.status.State == StateRunning || i.status.State == StateFailed)
}

func (i *instance) client() (sdk.Plugin, sdk.Description, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.status.State != StateRunning || i.rpc == nil {
		return nil, sdk.Description{}, false
	}
	return i.rpc, i.desc, true
}

func (i *instance) deviceList() ([]sdk.Device, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.desc.Name == "" {
		return nil, false
	}
	return append([]sdk.Device(nil), i.devices...), true
}

// processEnv is the whole environment of a plugin process: nothing of the
// agent's own environment leaks in (secrets, a TMPDIR too long for a socket).
func (i *instance) processEnv() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TMPDIR=" + i.host.opts.RuntimeDir,
		"HOME=" + i.host.opts.RuntimeDir,
		"LANG=C.UTF-8",
		"BAIAGENT_PLUGIN_NAME=" + i.cand.Name,
	}
	return append(env, i.host.opts.Env...)
}

func (i *instance) workDir() string {
	if i.host.opts.WorkDir != "" {
		return i.host.opts.WorkDir
	}
	return i.host.opts.RuntimeDir
}

// launchAndDescribe starts the process, completes the handshake and reads
// the description. On failure the instance is marked failed.
func (i *instance) launchAndDescribe(ctx context.Context) bool {
	opts := i.host.opts
	if err := checkExecutable(i.cand.Path); err != nil {
		i.fail(true, err)
		return false
	}
	var checksum []byte
	if want, ok := opts.Checksums[i.cand.Name]; ok {
		sum, err := parseChecksum(want)
		if err != nil {
			i.fail(true, fmt.Errorf("agent.plugin-checksums.%s: %w", i.cand.Name, err))
			return false
		}
		checksum = sum
	}
	proc, err := Launch(ctx, LaunchSpec{
		Name:         i.cand.Name,
		Path:         i.cand.Path,
		Env:          i.processEnv(),
		Dir:          i.workDir(),
		Checksum:     checksum,
		StartTimeout: opts.StartTimeout,
		Logger:       i.log,
	})
	if err != nil {
		var serr *StartError
		i.fail(errors.As(err, &serr) && serr.Permanent, err)
		return false
	}
	i.mu.Lock()
	i.proc = proc
	i.mu.Unlock()
	rpc := proc.RPC()
	pid := proc.PID()
	if pid != 0 {
		if err := writePidRecord(opts.RuntimeDir, i.cand.Name, pid); err != nil {
			i.log.Warn().Err(err).Msg("cannot record plugin pid; a killed agent may leave it behind")
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
	defer cancel()
	desc, err := rpc.Describe(callCtx)
	if err != nil {
		i.fail(false, callError("Describe", err, opts.CallTimeout))
		return false
	}
	if err := desc.Validate(); err != nil {
		i.fail(true, fmt.Errorf("invalid description: %w", err))
		return false
	}
	apiVersion, err := NegotiateAPIVersion(desc.APIVersions)
	if err != nil {
		i.fail(true, err)
		return false
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.desc.Name != "" && !sameKeys(i.desc.Keys(), desc.Keys()) {
		// A restarted (perhaps upgraded) plugin must keep its kinds: running
		// kernels hold allocations of them.
		i.status.State = StateFailed
		i.status.Reason = fmt.Sprintf("restarted plugin changed its kinds from %v to %v", i.desc.Keys(), desc.Keys())
		i.permanent = true
		go proc.Kill()
		return false
	}
	i.rpc = rpc
	i.desc = desc
	i.status.PID = pid
	i.status.Keys = desc.Keys()
	i.status.Version = desc.Version
	i.status.APIVersion = apiVersion
	i.status.State = StateStarting
	return true
}

func sameKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for n := range a {
		if a[n] != b[n] {
			return false
		}
	}
	return true
}

// claimKinds registers the plugin's kinds, refusing a kind another plugin
// already provides.
func (i *instance) claimKinds() bool {
	i.mu.Lock()
	keys := i.desc.Keys()
	i.mu.Unlock()
	if err := i.host.claim(i.cand.Name, keys); err != nil {
		i.fail(true, err)
		return false
	}
	return true
}

// configureAndList passes the configuration, reads the devices and starts
// watching them. On success the plugin is running.
func (i *instance) configureAndList(ctx context.Context) bool {
	opts := i.host.opts
	i.mu.Lock()
	rpc, claimed, apiVersion := i.rpc, i.desc.Keys(), i.status.APIVersion
	i.mu.Unlock()

	callCtx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
	defer cancel()
	err := rpc.Configure(callCtx, sdk.ConfigureRequest{
		APIVersion: apiVersion,
		Config:     opts.PluginConfig[i.cand.Name],
		Agent:      opts.Agent,
	})
	var cerr *sdk.ConfigError
	if errors.As(err, &cerr) {
		i.fail(true, fmt.Errorf("[plugins.%s] %w", i.cand.Name, err))
		return false
	}
	if err != nil {
		i.fail(false, callError("Configure", err, opts.CallTimeout))
		return false
	}
	// A plugin learns some of its slots from its configuration (MIG
	// profiles, fractional shares), so it describes itself again; its kinds
	// must stay the ones it claimed.
	desc, err := rpc.Describe(callCtx)
	if err != nil {
		i.fail(false, callError("Describe", err, opts.CallTimeout))
		return false
	}
	if err := desc.Validate(); err != nil {
		i.fail(true, fmt.Errorf("invalid description after configuration: %w", err))
		return false
	}
	if !sameKeys(claimed, desc.Keys()) {
		i.fail(true, fmt.Errorf("plugin changed its kinds from %v to %v when configured", claimed, desc.Keys()))
		return false
	}
	devices, err := rpc.ListDevices(callCtx)
	if err != nil {
		i.fail(false, callError("ListDevices", err, opts.CallTimeout))
		return false
	}
	if err := ValidateDevices(desc, devices); err != nil {
		i.fail(true, err)
		return false
	}
	watchCtx, watchCancel := context.WithCancel(context.WithoutCancel(ctx))
	i.mu.Lock()
	i.desc = desc
	i.devices = devices
	i.status.DeviceCount = len(devices)
	i.status.Slots = slotInfos(desc, devices)
	i.status.State = StateRunning
	i.status.Reason = ""
	i.watchCancel = watchCancel
	i.runningAt = time.Now()
	i.mu.Unlock()
	go i.watchDevices(watchCtx, rpc, desc)
	i.log.Info().Strs("kinds", desc.Keys()).Str("version", desc.Version).Int("devices", len(devices)).Msg("plugin running")
	return true
}

// ValidateDevices checks that every device sits in a slot of the plugin's
// own kinds, so a plugin can never add capacity to another plugin's slot.
func ValidateDevices(desc sdk.Description, devices []sdk.Device) error {
	slots := map[string]bool{}
	for _, k := range desc.Kinds {
		for _, st := range k.SlotTypes {
			slots[st.Name] = true
		}
	}
	ids := map[string]bool{}
	for _, d := range devices {
		if !slots[d.SlotName] {
			return fmt.Errorf("device %q is in slot %q, which the plugin does not describe", d.ID, d.SlotName)
		}
		if d.Capacity.IsNegative() {
			return fmt.Errorf("device %q has negative capacity %s", d.ID, d.Capacity)
		}
		key := d.SlotName + "/" + d.ID
		if ids[key] {
			return fmt.Errorf("device %q is listed twice in slot %q", d.ID, d.SlotName)
		}
		ids[key] = true
	}
	return nil
}

// watchDevices follows the plugin's device stream until ctx ends. A stream
// that breaks while the plugin lives is opened again.
func (i *instance) watchDevices(ctx context.Context, rpc *sdk.Client, desc sdk.Description) {
	for ctx.Err() == nil {
		updates, err := rpc.WatchDevices(ctx)
		if err == nil {
			for devices := range updates {
				if err := ValidateDevices(desc, devices); err != nil {
					i.log.Error().Err(err).Msg("ignoring invalid device update")
					continue
				}
				i.mu.Lock()
				i.devices = devices
				i.status.DeviceCount = len(devices)
				i.status.Slots = slotInfos(desc, devices)
				i.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// waitForExit returns when the process has exited or failed two health
// checks in a row (then it is killed), or ctx ends. It says which.
func (i *instance) waitForExit(ctx context.Context) string {
	i.mu.Lock()
	proc := i.proc
	i.mu.Unlock()
	health := time.NewTicker(i.host.opts.HealthInterval)
	defer health.Stop()
	failedPings := 0
	for {
		select {
		case <-ctx.Done():
			return "agent stopping"
		case <-proc.Done():
			return proc.ExitState()
		case <-health.C:
		}
		if proc.Exited() {
			return proc.ExitState()
		}
		if err := proc.Ping(ctx); err != nil {
			failedPings++
			i.log.Warn().Err(err).Int("failed_pings", failedPings).Msg("plugin failed a health check")
			if failedPings >= 2 {
				i.kill()
				return "killed after failing 2 health checks in a row: " + err.Error()
			}
		} else {
			failedPings = 0
		}
	}
}

// supervise restarts the plugin whenever it exits, with jittered
// exponential backoff, until ctx ends or a failure is permanent.
func (i *instance) supervise(ctx context.Context) {
	backoff := i.host.opts.MinBackoff
	for {
		i.mu.Lock()
		running := i.status.State == StateRunning
		i.mu.Unlock()
		if running {
			exit := i.waitForExit(ctx)
			if ctx.Err() != nil {
				return
			}
			i.mu.Lock()
			if time.Since(i.runningAt) > stableRunTime {
				backoff = i.host.opts.MinBackoff
			}
			var stderr string
			if i.proc != nil {
				stderr = i.proc.Stderr()
			}
			i.status.State = StateRestarting
			i.status.Reason = "plugin process exited: " + exit
			if stderr != "" {
				i.status.Reason += "; last stderr: " + stderr
			}
			i.mu.Unlock()
			// The traceback of a crash reaches the log only at debug
			// (go-plugin's level for plain stderr lines): repeat it here.
			i.log.Warn().Str("exit", exit).Str("stderr", stderr).Dur("backoff", backoff).Msg("plugin exited; restarting")
			i.kill()
		}
		i.mu.Lock()
		permanent := i.permanent
		i.mu.Unlock()
		if permanent {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, i.host.opts.MaxBackoff)
		i.mu.Lock()
		i.status.Restarts++
		i.mu.Unlock()
		if i.launchAndDescribe(ctx) {
			i.configureAndList(ctx)
		}
	}
}

// jitter spreads restarts of several plugins over ±20% of d.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// kill stops the process (see Process.Kill) and removes its pid record.
func (i *instance) kill() {
	i.mu.Lock()
	proc := i.proc
	if i.watchCancel != nil {
		i.watchCancel()
		i.watchCancel = nil
	}
	i.rpc = nil
	i.mu.Unlock()
	if proc != nil {
		proc.Kill()
	}
	_ = os.Remove(pidFilePath(i.host.opts.RuntimeDir, i.cand.Name))
}

func (i *instance) stop() {
	i.kill()
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.status.State == StateRunning || i.status.State == StateRestarting || i.status.State == StateStarting {
		i.status.State = StateStopped
	}
}

// goPluginAPIMismatch matches go-plugin's handshake errors for a plugin
// built for another major version of the plugin API (go-plugin's app
// protocol version) or of go-plugin itself (its core protocol).
var goPluginAPIMismatch = regexp.MustCompile(`incompatible (core )?API version with plugin\. Plugin version: (\d+)`)

// startError explains a failed handshake: the plugin's own stderr first
// (go-plugin's generic hints say little), the config key of a timeout, and
// whether a restart can help (a plugin for another API major cannot).
func startError(err error, timeout time.Duration, stderr string) (error, bool) {
	permanent := false
	msg := err.Error()
	switch m := goPluginAPIMismatch.FindStringSubmatch(msg); {
	case m != nil && m[1] != "":
		permanent = true
		err = fmt.Errorf("plugin speaks go-plugin core protocol %s, this agent %d; rebuild the plugin with a go-plugin of the same core protocol: %w",
			m[2], plugin.CoreProtocolVersion, err)
	case m != nil:
		permanent = true
		err = fmt.Errorf("plugin speaks plugin API %s.x, this agent speaks %d.x (the handshake's protocol version is the API major); install a build of the plugin for API %d.x: %w",
			m[2], sdk.ProtocolVersion, sdk.ProtocolVersion, err)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		err = fmt.Errorf("no handshake within agent.plugin-start-timeout (%s): %w", timeout, err)
	}
	if stderr != "" {
		return fmt.Errorf("plugin stderr: %s; start: %w", stderr, err), permanent
	}
	return fmt.Errorf("start: %w", err), permanent
}

// callError names the bound a timed-out call ran into. The call timeout
// has no agent.toml key; say so rather than send the operator looking.
func callError(call string, err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return fmt.Errorf("%s: no answer within the plugin call timeout (%s, fixed: no agent.toml key): %w", call, timeout, err)
	}
	return fmt.Errorf("%s: %w", call, err)
}
