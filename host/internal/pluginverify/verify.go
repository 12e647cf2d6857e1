// Package pluginverify is the conformance kit for compute plugins: it
// launches a plugin binary the way the agent does (pluginhost.Launch) and
// checks every part of the contract a vendor can get wrong, from the
// handshake to exiting when asked or orphaned, reporting each check by
// name with the latency of every call.
package pluginverify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/proto/sdk"
)

// Check names, as printed and as listed in the failure.
const (
	CheckHandshake       = "handshake"
	CheckHealth          = "health"
	CheckDescribe        = "describe"
	CheckUnknownKey      = "configure-unknown-key"
	CheckConfigure       = "configure"
	CheckListDevices     = "list-devices"
	CheckWatchDevices    = "watch-devices"
	CheckPrepareRestore  = "prepare-restore"
	CheckNodeMetrics     = "node-metrics"
	CheckContainerMetric = "container-metrics"
	CheckHardwareInfo    = "hardware-info"
	CheckShutdown        = "shutdown"
	CheckParentDeath     = "parent-death"
)

// UnknownKey is the configuration key no plugin may accept.
const UnknownKey = "baiagent-verify-unknown-key"

// ExitBound is how soon a plugin must exit once asked or orphaned.
const ExitBound = time.Second

// unitHints are the unit hints the manager and the web UI know.
var unitHints = []string{"bytes", "msec", "percent", "bps", "Celsius", "Watts", "count"}

// Options say which plugin to verify and how.
type Options struct {
	// Path is the plugin executable.
	Path string
	// Config is the plugin's table ([plugins.<name>]); nil sends
	// config_json null, as the agent does when there is no table.
	Config map[string]any
	// WorkDir is the plugin's working directory: relative paths in Config
	// resolve against it, as against agent.toml's directory.
	WorkDir string
	// RuntimeDir is a short directory for sockets (the plugin's TMPDIR).
	RuntimeDir string
	// StartTimeout bounds the handshake, CallTimeout each call. Zero
	// means 2 minutes and 30 seconds, the agent's defaults.
	StartTimeout, CallTimeout time.Duration
	// Logger receives the plugin's own log lines.
	Logger zerolog.Logger
}

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	// Skipped checks did not run because an earlier one failed.
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Latency summarises the calls of one method.
type Latency struct {
	Call   string        `json:"call"`
	Count  int           `json:"count"`
	Min    time.Duration `json:"min_ns"`
	Median time.Duration `json:"median_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Report is the outcome of a verification.
type Report struct {
	Plugin    string    `json:"plugin"`
	Path      string    `json:"path"`
	Checks    []Result  `json:"checks"`
	Latencies []Latency `json:"latencies"`
}

// Failed names every check that failed or could not run.
func (r Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, c.Name)
		}
	}
	return out
}

// Write prints the report for a person.
func (r Report) Write(w io.Writer) {
	fmt.Fprintf(w, "plugin %s (%s)\n", r.Plugin, r.Path)
	for _, c := range r.Checks {
		mark := "PASS"
		switch {
		case c.Skipped:
			mark = "SKIP"
		case !c.Passed:
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %-22s %s\n", mark, c.Name, c.Detail)
	}
	fmt.Fprintln(w, "latencies (count, min, median, max):")
	for _, l := range r.Latencies {
		fmt.Fprintf(w, "  %-22s %4d  %10s  %10s  %10s\n", l.Call, l.Count, l.Min, l.Median, l.Max)
	}
}

// verifier carries one run's state; it is not shared.
type verifier struct {
	opts    Options
	name    string
	report  Report
	timings map[string][]time.Duration
}

// Run verifies the plugin at opts.Path. The error is for the kit's own
// problems (no runtime dir); a plugin's failures are in the report.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.RuntimeDir == "" {
		return Report{}, errors.New("pluginverify: no runtime dir")
	}
	if opts.WorkDir == "" {
		opts.WorkDir = opts.RuntimeDir
	}
	name := strings.TrimPrefix(filepath.Base(opts.Path), pluginhost.ExecutablePrefix)
	v := &verifier{opts: opts, name: name, timings: map[string][]time.Duration{},
		report: Report{Plugin: name, Path: opts.Path}}
	v.run(ctx)
	v.report.Latencies = v.latencies()
	return v.report, nil
}

func (v *verifier) pass(name, detail string) {
	v.report.Checks = append(v.report.Checks, Result{Name: name, Passed: true, Detail: detail})
}

func (v *verifier) fail(name string, format string, args ...any) {
	v.report.Checks = append(v.report.Checks, Result{Name: name, Detail: fmt.Sprintf(format, args...)})
}

func (v *verifier) skip(reason string, names ...string) {
	for _, n := range names {
		v.report.Checks = append(v.report.Checks, Result{Name: n, Skipped: true, Detail: reason})
	}
}

// timed runs one call under the call timeout and records its latency.
func timed[T any](ctx context.Context, v *verifier, call string, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	out, err := fn(ctx)
	v.timings[call] = append(v.timings[call], time.Since(start))
	return out, err
}

func (v *verifier) env() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TMPDIR=" + v.opts.RuntimeDir,
		"HOME=" + v.opts.RuntimeDir,
		"LANG=C.UTF-8",
		"BAIAGENT_PLUGIN_NAME=" + v.name,
	}
}

func (v *verifier) launch(ctx context.Context, wrapper []string) (*pluginhost.Process, error) {
	return pluginhost.Launch(ctx, pluginhost.LaunchSpec{
		Name:         v.name,
		Path:         v.opts.Path,
		Env:          v.env(),
		Dir:          v.opts.WorkDir,
		Wrapper:      wrapper,
		StartTimeout: v.opts.StartTimeout,
		Logger:       v.opts.Logger,
	})
}

var afterHandshake = []string{CheckHealth, CheckDescribe, CheckUnknownKey, CheckConfigure, CheckListDevices,
	CheckWatchDevices, CheckPrepareRestore, CheckNodeMetrics, CheckContainerMetric, CheckHardwareInfo, CheckShutdown, CheckParentDeath}

func (v *verifier) run(ctx context.Context) {
	start := time.Now()
	proc, err := v.launch(ctx, nil)
	v.timings["handshake"] = append(v.timings["handshake"], time.Since(start))
	if err != nil {
		v.fail(CheckHandshake, "%v", err)
		v.skip("not run: no handshake", afterHandshake...)
		return
	}
	v.pass(CheckHandshake, "go-plugin gRPC with AutoMTLS")
	killed := false
	defer func() {
		if !killed {
			proc.Kill()
		}
	}()

	for range 10 {
		_, err = timed(ctx, v, "grpc.health.v1/Check", func(ctx context.Context) (struct{}, error) { return struct{}{}, proc.Ping(ctx) })
		if err != nil {
			break
		}
	}
	if err != nil {
		v.fail(CheckHealth, "%v", err)
	} else {
		v.pass(CheckHealth, `SERVING for service "plugin"`)
	}

	rpc := proc.RPC()
	desc, apiVersion, ok := v.checkDescribe(ctx, rpc)
	if !ok {
		v.skip("not run: no valid description", CheckUnknownKey, CheckConfigure, CheckListDevices,
			CheckWatchDevices, CheckPrepareRestore, CheckNodeMetrics, CheckContainerMetric, CheckHardwareInfo)
	} else {
		v.checkUnknownKey(ctx, rpc, apiVersion)
		desc = v.checkConfigure(ctx, rpc, apiVersion, desc)
		devices := v.checkDevices(ctx, rpc, desc)
		v.checkPrepareRestore(ctx, rpc, desc, devices)
		v.checkNodeMetrics(ctx, rpc)
		v.checkContainerMetrics(ctx, rpc)
		v.checkHardwareInfo(ctx, rpc)
	}
	killed = true
	v.checkShutdown(ctx, proc)
	v.checkParentDeath(ctx)
}

func (v *verifier) checkDescribe(ctx context.Context, rpc *sdk.Client) (sdk.Description, string, bool) {
	var desc sdk.Description
	var err error
	for range 10 {
		if desc, err = timed(ctx, v, "Describe", rpc.Describe); err != nil {
			break
		}
	}
	if err != nil {
		v.fail(CheckDescribe, "%v", err)
		return desc, "", false
	}
	if err := desc.Validate(); err != nil {
		v.fail(CheckDescribe, "%v", err)
		return desc, "", false
	}
	apiVersion, err := pluginhost.NegotiateAPIVersion(desc.APIVersions)
	if err != nil {
		v.fail(CheckDescribe, "%v", err)
		return desc, "", false
	}
	v.report.Plugin = desc.Name
	v.pass(CheckDescribe, fmt.Sprintf("%s %s, kinds %v, API %s", desc.Name, desc.Version, desc.Keys(), apiVersion))
	return desc, apiVersion, true
}

func (v *verifier) checkUnknownKey(ctx context.Context, rpc *sdk.Client, apiVersion string) {
	cfg := map[string]any{UnknownKey: true}
	for k, val := range v.opts.Config {
		cfg[k] = val
	}
	_, err := timed(ctx, v, "Configure", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, rpc.Configure(ctx, sdk.ConfigureRequest{APIVersion: apiVersion, Config: cfg})
	})
	var cerr *sdk.ConfigError
	switch {
	case err == nil:
		v.fail(CheckUnknownKey, "Configure accepted the unknown key %q; answer a ConfigProblem naming it", UnknownKey)
	case !errors.As(err, &cerr):
		v.fail(CheckUnknownKey, "Configure failed instead of answering a ConfigProblem for %q: %v", UnknownKey, err)
	default:
		for _, p := range cerr.Problems {
			if strings.Contains(p.Key, UnknownKey) {
				v.pass(CheckUnknownKey, fmt.Sprintf("%s: %s", p.Key, p.Reason))
				return
			}
		}
		v.fail(CheckUnknownKey, "the ConfigError does not name %q: %v", UnknownKey, cerr)
	}
}

func (v *verifier) checkConfigure(ctx context.Context, rpc *sdk.Client, apiVersion string, desc sdk.Description) sdk.Description {
	_, err := timed(ctx, v, "Configure", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, rpc.Configure(ctx, sdk.ConfigureRequest{APIVersion: apiVersion, Config: v.opts.Config,
			Agent: sdk.AgentInfo{AgentID: "baiagent-verify"}})
	})
	if err != nil {
		v.fail(CheckConfigure, "%v", err)
		return desc
	}
	after, err := timed(ctx, v, "Describe", rpc.Describe)
	switch {
	case err != nil:
		v.fail(CheckConfigure, "Describe after Configure: %v", err)
	case after.Validate() != nil:
		v.fail(CheckConfigure, "description after Configure: %v", after.Validate())
	case !slices.Equal(after.Keys(), desc.Keys()):
		v.fail(CheckConfigure, "kinds changed from %v to %v when configured", desc.Keys(), after.Keys())
	default:
		v.pass(CheckConfigure, "accepted; description still valid")
		return after
	}
	return desc
}

func (v *verifier) checkDevices(ctx context.Context, rpc *sdk.Client, desc sdk.Description) []sdk.Device {
	var devices []sdk.Device
	var err error
	for range 10 {
		if devices, err = timed(ctx, v, "ListDevices", rpc.ListDevices); err != nil {
			break
		}
	}
	if err != nil {
		v.fail(CheckListDevices, "%v", err)
		v.skip("not run: no device list", CheckWatchDevices)
		return nil
	}
	if err := pluginhost.ValidateDevices(desc, devices); err != nil {
		v.fail(CheckListDevices, "%v", err)
	} else {
		v.pass(CheckListDevices, fmt.Sprintf("%d devices", len(devices)))
	}

	watchCtx, cancel := context.WithTimeout(ctx, v.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	updates, err := rpc.WatchDevices(watchCtx)
	if err != nil {
		v.fail(CheckWatchDevices, "%v", err)
		return devices
	}
	first, ok := <-updates
	v.timings["WatchDevices (first)"] = append(v.timings["WatchDevices (first)"], time.Since(start))
	cancel()
	// Drain so the client's stream goroutine ends before we return.
	for range updates {
	}
	switch {
	case !ok:
		v.fail(CheckWatchDevices, "the stream ended without a first device list: %v", watchCtx.Err())
	case !sameDevices(first, devices):
		v.fail(CheckWatchDevices, "first WatchDevices list %s differs from ListDevices %s", deviceKeys(first), deviceKeys(devices))
	default:
		v.pass(CheckWatchDevices, "first list equals ListDevices")
	}
	return devices
}

// sameDevices compares what the allocator uses: slot, ID, capacity, health.
func sameDevices(a, b []sdk.Device) bool {
	return slices.Equal(deviceKeys(a), deviceKeys(b))
}

func deviceKeys(ds []sdk.Device) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s/%s=%s(%s)", d.SlotName, d.ID, d.Capacity, d.Health))
	}
	sort.Strings(out)
	return out
}

// oneUnit is what the kit allocates of a device: 1 (or the whole device
// when smaller); 1 GiB of a bytes slot.
func oneUnit(kind sdk.SlotKind, capacity decimal.Decimal) decimal.Decimal {
	unit := decimal.NewFromInt(1)
	if kind == sdk.SlotBytes {
		unit = decimal.NewFromInt(1 << 30)
	}
	return decimal.Min(unit, capacity)
}

func (v *verifier) checkPrepareRestore(ctx context.Context, rpc *sdk.Client, desc sdk.Description, devices []sdk.Device) {
	slotKinds := map[string]sdk.SlotKind{}
	for _, k := range desc.Kinds {
		for _, st := range k.SlotTypes {
			slotKinds[st.Name] = st.Kind
		}
	}
	var problems []string
	tried := 0
	for n, d := range devices {
		kind := slotKinds[d.SlotName]
		if kind == sdk.SlotUnified || !d.Capacity.IsPositive() {
			continue
		}
		tried++
		alloc := sdk.Allocation{d.SlotName: {d.ID: oneUnit(kind, d.Capacity)}}
		configDir := filepath.Join(v.opts.RuntimeDir, "kernel-"+strconv.Itoa(n))
		if err := os.MkdirAll(configDir, 0o700); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		spec, err := timed(ctx, v, "PrepareContainer", func(ctx context.Context) (sdk.ContainerSpec, error) {
			return rpc.PrepareContainer(ctx, sdk.PrepareRequest{Allocation: alloc, ConfigDir: configDir,
				KernelID: "baiagent-verify-" + strconv.Itoa(n), ImageDistro: "ubuntu22.04", ImageArch: "x86_64"})
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("PrepareContainer %s/%s: %v", d.SlotName, d.ID, err))
			continue
		}
		// resource.txt as the agent writes it: the plugin's lines plus the
		// allocation's <SLOT>_SHARES lines.
		data := map[string]string{}
		for k, val := range spec.ResourceData {
			data[k] = val
		}
		key, value := sdk.FormatShares(d.SlotName, alloc[d.SlotName], kind == sdk.SlotBytes)
		data[key] = value
		restored, err := timed(ctx, v, "RestoreAllocation", func(ctx context.Context) (sdk.Allocation, error) {
			return rpc.RestoreAllocation(ctx, sdk.RestoreRequest{ResourceData: data, CpusetCpus: spec.CpusetCpus, MemoryBytes: spec.MemoryBytes})
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("RestoreAllocation %s/%s: %v", d.SlotName, d.ID, err))
			continue
		}
		if !sameAllocation(alloc, restored) {
			problems = append(problems, fmt.Sprintf("prepared %s, restored %s", formatAllocation(alloc), formatAllocation(restored)))
		}
	}
	switch {
	case len(problems) > 0:
		v.fail(CheckPrepareRestore, "%s", strings.Join(problems, "; "))
	case tried == 0:
		v.fail(CheckPrepareRestore, "no device to allocate: give a --config under which the plugin sees devices (a fixture)")
	default:
		v.pass(CheckPrepareRestore, fmt.Sprintf("%d devices prepared and restored", tried))
	}
}

// sameAllocation ignores empty slots and compares amounts as numbers.
func sameAllocation(a, b sdk.Allocation) bool {
	return formatAllocation(a) == formatAllocation(b)
}

func formatAllocation(a sdk.Allocation) string {
	var parts []string
	for slot, per := range a {
		for dev, amount := range per {
			parts = append(parts, slot+"/"+dev+"="+amount.String())
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

// metricProblems checks the shape every metric shares; containers says
// which per-container keys may appear.
func metricProblems(metrics []sdk.Metric, containers map[string]bool) []string {
	var problems []string
	seen := map[string]bool{}
	for _, m := range metrics {
		switch {
		case m.Key == "":
			problems = append(problems, "a metric without a key")
			continue
		case seen[m.Key]:
			problems = append(problems, fmt.Sprintf("%s: reported twice", m.Key))
		}
		seen[m.Key] = true
		if m.Type == sdk.MetricTypeUnspecified {
			problems = append(problems, fmt.Sprintf("%s: type unspecified", m.Key))
		}
		if !slices.Contains(unitHints, m.UnitHint) {
			problems = append(problems, fmt.Sprintf("%s: unit hint %q is none of %v", m.Key, m.UnitHint, unitHints))
		}
		check := func(where string, ms sdk.Measurement) {
			if m.Type != sdk.MetricGauge && ms.Value.IsNegative() {
				problems = append(problems, fmt.Sprintf("%s %s: negative value %s", m.Key, where, ms.Value))
			}
			if ms.Capacity != nil && ms.Capacity.IsNegative() {
				problems = append(problems, fmt.Sprintf("%s %s: negative capacity %s", m.Key, where, ms.Capacity))
			}
		}
		if m.PerNode != nil {
			check("per node", *m.PerNode)
		}
		// Per-device keys are not always listed devices: upstream's intrinsic
		// plugin reports disks and network interfaces there.
		for id, ms := range m.PerDevice {
			if id == "" {
				problems = append(problems, fmt.Sprintf("%s: a per-device value without a device ID", m.Key))
			}
			check("device "+id, ms)
		}
		for id, ms := range m.PerContainer {
			if !containers[id] {
				problems = append(problems, fmt.Sprintf("%s: per-container value for %q, which was not asked for", m.Key, id))
			}
			check("container "+id, ms)
		}
	}
	return problems
}

func (v *verifier) checkNodeMetrics(ctx context.Context, rpc *sdk.Client) {
	var metrics []sdk.Metric
	var err error
	for range 3 {
		if metrics, err = timed(ctx, v, "NodeMetrics", rpc.NodeMetrics); err != nil {
			break
		}
	}
	if err != nil {
		v.fail(CheckNodeMetrics, "%v", err)
		return
	}
	if p := metricProblems(metrics, nil); len(p) > 0 {
		v.fail(CheckNodeMetrics, "%s", strings.Join(p, "; "))
		return
	}
	v.pass(CheckNodeMetrics, fmt.Sprintf("%d metrics", len(metrics)))
}

// selfContainer stands for a container: the kit's own process and cgroup.
func selfContainer() sdk.ContainerRef {
	ref := sdk.ContainerRef{ContainerID: "baiagent-verify-self", PID: os.Getpid()}
	if raw, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				ref.CgroupPath = strings.TrimPrefix(rest, "/")
			}
		}
	}
	return ref
}

func (v *verifier) checkContainerMetrics(ctx context.Context, rpc *sdk.Client) {
	ref := selfContainer()
	metrics, err := timed(ctx, v, "ContainerMetrics", func(ctx context.Context) ([]sdk.Metric, error) {
		return rpc.ContainerMetrics(ctx, []sdk.ContainerRef{ref})
	})
	if err != nil {
		v.fail(CheckContainerMetric, "%v", err)
		return
	}
	var problems []string
	for _, m := range metrics {
		if m.PerNode != nil || len(m.PerDevice) > 0 {
			problems = append(problems, fmt.Sprintf("%s: container metrics carry per-container values only", m.Key))
		}
	}
	problems = append(problems, metricProblems(metrics, map[string]bool{ref.ContainerID: true})...)
	if len(problems) > 0 {
		v.fail(CheckContainerMetric, "%s", strings.Join(problems, "; "))
		return
	}
	v.pass(CheckContainerMetric, fmt.Sprintf("%d metrics", len(metrics)))
}

func (v *verifier) checkHardwareInfo(ctx context.Context, rpc *sdk.Client) {
	hw, err := timed(ctx, v, "HardwareInfo", rpc.HardwareInfo)
	switch {
	case err != nil:
		v.fail(CheckHardwareInfo, "%v", err)
	case hw.Status == sdk.HealthUnknown:
		v.fail(CheckHardwareInfo, "status is HEALTH_UNSPECIFIED")
	default:
		v.pass(CheckHardwareInfo, fmt.Sprintf("%s: %s", hw.Status, hw.StatusInfo))
	}
}

// shutdownMethod is go-plugin's controller call, which the agent makes
// (through go-plugin) whenever it stops a plugin.
const shutdownMethod = "/plugin.GRPCController/Shutdown"

func (v *verifier) checkShutdown(ctx context.Context, proc *pluginhost.Process) {
	defer proc.Kill()
	if proc.Exited() {
		v.fail(CheckShutdown, "the plugin had exited before Shutdown: %s; stderr: %s", proc.ExitState(), proc.Stderr())
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, ExitBound)
	defer cancel()
	start := time.Now()
	err := proc.Conn().Invoke(callCtx, shutdownMethod, &emptypb.Empty{}, &emptypb.Empty{})
	// The plugin may close the connection before it answers.
	if status.Code(err) == codes.Unimplemented {
		v.fail(CheckShutdown, "plugin.GRPCController/Shutdown is not served: %v", err)
		return
	}
	for !proc.Exited() && time.Since(start) < ExitBound {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	v.timings["Shutdown to exit"] = append(v.timings["Shutdown to exit"], took)
	if !proc.Exited() {
		v.fail(CheckShutdown, "still running %s after plugin.GRPCController/Shutdown", ExitBound)
		return
	}
	v.pass(CheckShutdown, fmt.Sprintf("exited %s after Shutdown", took.Round(time.Millisecond)))
}

// checkParentDeath starts the plugin as a shell's child, kills the shell
// and waits for the orphaned plugin to exit, as it must when the agent dies
// and the parent-death signal was lost.
func (v *verifier) checkParentDeath(ctx context.Context) {
	pidFile := filepath.Join(v.opts.RuntimeDir, "verify-orphan.pid")
	// $0 is the pid file, $1 the plugin.
	proc, err := v.launch(ctx, []string{"/bin/sh", "-c", `"$1" & echo $! > "$0"; wait`, pidFile})
	if err != nil {
		v.fail(CheckParentDeath, "second launch under a shell: %v", err)
		return
	}
	defer proc.Kill()
	raw, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || perr != nil || pid <= 0 {
		v.fail(CheckParentDeath, "no plugin pid from the shell: %v %v", err, perr)
		return
	}
	if err := syscall.Kill(proc.PID(), syscall.SIGKILL); err != nil {
		v.fail(CheckParentDeath, "kill the parent shell: %v", err)
		return
	}
	start := time.Now()
	for alive(pid) && time.Since(start) < ExitBound {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		v.fail(CheckParentDeath, "still running %s after its parent died; poll getppid() or set a parent-death signal", ExitBound)
		return
	}
	v.timings["parent death to exit"] = append(v.timings["parent death to exit"], took)
	v.pass(CheckParentDeath, fmt.Sprintf("exited %s after its parent died", took.Round(time.Millisecond)))
}

// alive reports whether pid runs; a zombie (an orphan whose new parent
// has not reaped it yet) has exited.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func (v *verifier) latencies() []Latency {
	out := make([]Latency, 0, len(v.timings))
	for call, ds := range v.timings {
		sorted := slices.Clone(ds)
		slices.Sort(sorted)
		out = append(out, Latency{Call: call, Count: len(sorted), Min: sorted[0], Median: sorted[len(sorted)/2], Max: sorted[len(sorted)-1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}
