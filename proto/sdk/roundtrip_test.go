package sdk

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/baiagent/baiagent/proto/gen/bai/plugin/v1"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

// recordingPlugin returns fixed, fully populated values and records what it
// was given, so every field can be checked across the wire.
type recordingPlugin struct {
	desc      Description
	devices   []Device
	spec      ContainerSpec
	alloc     Allocation
	metrics   []Metric
	hw        HardwareInfo
	configErr error
	callErr   error

	gotConfigure ConfigureRequest
	gotPrepare   PrepareRequest
	gotRestore   RestoreRequest
	gotRefs      []ContainerRef
}

func (p *recordingPlugin) Describe(context.Context) (Description, error) { return p.desc, p.callErr }
func (p *recordingPlugin) Configure(_ context.Context, req ConfigureRequest) error {
	p.gotConfigure = req
	return p.configErr
}
func (p *recordingPlugin) ListDevices(context.Context) ([]Device, error) { return p.devices, p.callErr }
func (p *recordingPlugin) WatchDevices(ctx context.Context) (<-chan []Device, error) {
	ch := make(chan []Device)
	go func() {
		defer close(ch)
		for _, n := range []int{1, 2} {
			select {
			case ch <- p.devices[:n]:
			case <-ctx.Done():
				return
			}
		}
		<-ctx.Done()
	}()
	return ch, nil
}
func (p *recordingPlugin) PrepareContainer(_ context.Context, req PrepareRequest) (ContainerSpec, error) {
	p.gotPrepare = req
	return p.spec, p.callErr
}
func (p *recordingPlugin) RestoreAllocation(_ context.Context, req RestoreRequest) (Allocation, error) {
	p.gotRestore = req
	return p.alloc, p.callErr
}
func (p *recordingPlugin) NodeMetrics(context.Context) ([]Metric, error) { return p.metrics, p.callErr }
func (p *recordingPlugin) ContainerMetrics(_ context.Context, refs []ContainerRef) ([]Metric, error) {
	p.gotRefs = refs
	return p.metrics, p.callErr
}
func (p *recordingPlugin) HardwareInfo(context.Context) (HardwareInfo, error) { return p.hw, p.callErr }

func fullPlugin() *recordingPlugin {
	return &recordingPlugin{
		desc: Description{
			Name: "cuda", Version: "1.2.3", APIVersions: []string{"1.0"},
			Kinds: []ResourceKind{{
				Key: "cuda",
				SlotTypes: []SlotType{
					{Name: "cuda.device", Kind: SlotCount, HumanReadableName: "GPU", Description: "CUDA-capable GPU", DisplayUnit: "GPU", NumberFormat: NumberFormat{RoundLength: 0}, DisplayIcon: "gpu1"},
					{Name: "cuda.device:1g.10gb-mig", Kind: SlotUnique, HumanReadableName: "MIG", NumberFormat: NumberFormat{Binary: true, RoundLength: 2}},
				},
				ExclusiveSlotPatterns: []string{"cuda.device", "cuda.device:*-mig"},
				AllocMap:              AllocMapSpec{Kind: AllocFractional, Strategy: StrategyEvenly, Quantum: d("0.01"), MinMemory: d("0.25"), AllowFragmentation: true},
			}},
			UpstreamEntrypoints: []string{"ai.backend.accelerator.cuda_open"},
			ExtraInfo:           map[string]string{"driver": "550.54"},
		},
		devices: []Device{
			{ID: "0", Model: "A100", UUID: "GPU-aaa", PCIBusID: "0000:01:00.0", NUMANode: 0, MemoryBytes: 80 << 30, ProcessingUnits: 108,
				Health: HealthHealthy, Attributes: map[string]string{"cc": "8.0"}, SlotName: "cuda.device", Capacity: d("1")},
			{ID: "1", Model: "A100", NUMANode: UnknownNUMANode, Health: HealthUnhealthy, HealthDescription: "XID 79", SlotName: "cuda.device", Capacity: d("0.5")},
		},
		spec: ContainerSpec{
			Env:             map[string]string{"NVIDIA_VISIBLE_DEVICES": "GPU-aaa"},
			Devices:         []DeviceNode{{HostPath: "/dev/nvidia0", ContainerPath: "/dev/nvidia0", CgroupPermissions: "rwm"}},
			Mounts:          []Mount{{Source: "/etc/x", Target: "/x", ReadOnly: true}},
			DeviceRequests:  []DeviceRequest{{Driver: "nvidia", Count: 0, DeviceIDs: []string{"0"}, Capabilities: [][]string{{"gpu", "compute"}}, Options: map[string]string{"a": "b"}}},
			CDIDevices:      []string{"nvidia.com/gpu=GPU-aaa"},
			GroupAdd:        []string{"video"},
			ResourceData:    map[string]string{"CUDA_GLOBAL_DEVICE_IDS": "0:0"},
			AttachedDevices: []AttachedDevice{{DeviceID: "0", ModelName: "A100", Data: map[string]string{"smp": "108"}}},
			CpusetCpus:      "0,1", MemoryBytes: 1 << 30, MemorySwapBytes: 1 << 30, Runtime: "nvidia",
			Hooks: []string{"/opt/hook.so"}, DockerNetworks: []string{"net"}, AllowedSyscalls: []string{"perf_event_open"},
		},
		alloc: Allocation{"cuda.device": {"0": d("1"), "1": d("0.25")}},
		metrics: []Metric{
			{Key: "cuda_util", Type: MetricUtilization, UnitHint: "percent", PerNode: &Measurement{Value: d("12.5"), Capacity: ptr(d("100"))},
				PerDevice: map[string]Measurement{"0": {Value: d("25")}}},
			{Key: "cuda_mem", Type: MetricGauge, UnitHint: "bytes", PerContainer: map[string]Measurement{"c1": {Value: d("1024"), Capacity: ptr(d("2048"))}}},
		},
		hw: HardwareInfo{Status: HealthDegraded, StatusInfo: "1 of 2 GPUs unhealthy", Metadata: map[string]string{"driver": "550"}},
	}
}

func TestEveryCallRoundTrips(t *testing.T) {
	impl := fullPlugin()
	c := TestClient(t, impl)
	ctx := context.Background()

	desc, err := c.Describe(ctx)
	if err != nil || !reflect.DeepEqual(desc, impl.desc) {
		t.Fatalf("describe: %v\n got %+v\nwant %+v", err, desc, impl.desc)
	}
	if err := desc.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := ConfigureRequest{APIVersion: "1.0", Config: map[string]any{"mode": "x", "n": 2.0, "list": []any{"a"}}, Agent: AgentInfo{AgentID: "i-1", DockerVersion: "28.2", DockerRuntimes: []string{"runc"}}}
	if err := c.Configure(ctx, cfg); err != nil || !reflect.DeepEqual(impl.gotConfigure, cfg) {
		t.Fatalf("configure: %v\n got %+v\nwant %+v", err, impl.gotConfigure, cfg)
	}
	devs, err := c.ListDevices(ctx)
	if err != nil || !reflect.DeepEqual(devs, impl.devices) {
		t.Fatalf("list devices: %v\n got %+v\nwant %+v", err, devs, impl.devices)
	}
	prep := PrepareRequest{Allocation: impl.alloc, ConfigDir: "/scratch/k/config/cuda", KernelID: "k", ImageDistro: "ubuntu22.04", ImageArch: "x86_64"}
	spec, err := c.PrepareContainer(ctx, prep)
	if err != nil || !reflect.DeepEqual(spec, impl.spec) || !reflect.DeepEqual(impl.gotPrepare, prep) {
		t.Fatalf("prepare: %v\n got %+v\nwant %+v\n req %+v", err, spec, impl.spec, impl.gotPrepare)
	}
	rest := RestoreRequest{ResourceData: map[string]string{"CUDA.DEVICE_SHARES": "0:1"}, Labels: map[string]string{"ai.backend.kernel-id": "k"}, CpusetCpus: "0", MemoryBytes: 5}
	got, err := c.RestoreAllocation(ctx, rest)
	if err != nil || !reflect.DeepEqual(got, impl.alloc) || !reflect.DeepEqual(impl.gotRestore, rest) {
		t.Fatalf("restore: %v %+v %+v", err, got, impl.gotRestore)
	}
	ms, err := c.NodeMetrics(ctx)
	if err != nil || !reflect.DeepEqual(ms, impl.metrics) {
		t.Fatalf("node metrics: %v\n got %+v\nwant %+v", err, ms, impl.metrics)
	}
	refs := []ContainerRef{{ContainerID: "c1", CgroupPath: "system.slice/docker-c1.scope", PID: 42}}
	if _, err := c.ContainerMetrics(ctx, refs); err != nil || !reflect.DeepEqual(impl.gotRefs, refs) {
		t.Fatalf("container metrics: %v %+v", err, impl.gotRefs)
	}
	hw, err := c.HardwareInfo(ctx)
	if err != nil || !reflect.DeepEqual(hw, impl.hw) {
		t.Fatalf("hardware info: %v %+v", err, hw)
	}

	watchCtx, cancel := context.WithCancel(ctx)
	updates, err := c.WatchDevices(watchCtx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{1, 2} {
		select {
		case devs := <-updates:
			if len(devs) != want {
				t.Fatalf("watch update has %d devices, want %d", len(devs), want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no watch update")
		}
	}
	cancel()
	select {
	case _, open := <-updates:
		if open {
			t.Fatal("watch channel delivered after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	cases := []struct {
		description string
		configErr   error
		callErr     error
		check       func(t *testing.T, c *Client)
	}{
		{
			description: "a config error keeps every key and reason",
			configErr:   &ConfigError{Problems: []ConfigProblem{{Key: "unit-mem", Reason: "must be positive"}, {Key: "mode", Reason: "unknown"}}},
			check: func(t *testing.T, c *Client) {
				err := c.Configure(context.Background(), ConfigureRequest{})
				var cerr *ConfigError
				if !errors.As(err, &cerr) || len(cerr.Problems) != 2 || cerr.Problems[0].Key != "unit-mem" || cerr.Problems[1].Reason != "unknown" {
					t.Fatalf("got %v", err)
				}
			},
		},
		{
			description: "a plugin's error message reaches the agent",
			callErr:     errors.New("NVML: driver/library version mismatch"),
			check: func(t *testing.T, c *Client) {
				_, err := c.ListDevices(context.Background())
				if err == nil || !strings.Contains(err.Error(), "driver/library version mismatch") || !strings.HasPrefix(err.Error(), "list devices:") {
					t.Fatalf("got %v", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			impl := fullPlugin()
			impl.configErr, impl.callErr = tc.configErr, tc.callErr
			tc.check(t, TestClient(t, impl))
		})
	}
}

func TestMalformedDecimalsAreNamed(t *testing.T) {
	_, err := devicesFromProto([]*pluginv1.Device{{Id: "gpu0", Capacity: "1,5"}})
	if err == nil || !strings.Contains(err.Error(), `device "gpu0" capacity`) {
		t.Fatalf("got %v", err)
	}
	_, err = allocationFromProto(&pluginv1.Allocation{Slots: map[string]*pluginv1.DeviceAmounts{"cpu": {Amounts: map[string]string{"3": "NaN?"}}}})
	if err == nil || !strings.Contains(err.Error(), "allocation cpu/3") {
		t.Fatalf("got %v", err)
	}
}

// FuzzDecodeWireMessages feeds arbitrary bytes (as they would arrive from a
// plugin process) through the decoders the agent uses; none may panic, and
// what decodes must re-encode to the same value.
func FuzzDecodeWireMessages(f *testing.F) {
	impl := fullPlugin()
	for _, m := range []proto.Message{
		descriptionToProto(impl.desc),
		&pluginv1.ListDevicesResponse{Devices: devicesToProto(impl.devices)},
		allocationToProto(impl.alloc),
		&pluginv1.NodeMetricsResponse{Metrics: metricsToProto(impl.metrics)},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var desc pluginv1.DescribeResponse
		if proto.Unmarshal(b, &desc) == nil {
			if dd, err := descriptionFromProto(&desc); err == nil {
				_ = dd.Validate()
				again, err := descriptionFromProto(descriptionToProto(dd))
				if err != nil || !reflect.DeepEqual(again.Keys(), dd.Keys()) {
					t.Fatalf("description does not re-encode: %v", err)
				}
			}
		}
		var devs pluginv1.ListDevicesResponse
		if proto.Unmarshal(b, &devs) == nil {
			if dl, err := devicesFromProto(devs.GetDevices()); err == nil {
				again, err := devicesFromProto(devicesToProto(dl))
				if err != nil || len(again) != len(dl) {
					t.Fatalf("devices do not re-encode: %v", err)
				}
			}
		}
		var a pluginv1.Allocation
		if proto.Unmarshal(b, &a) == nil {
			if al, err := allocationFromProto(&a); err == nil {
				if _, err := allocationFromProto(allocationToProto(al)); err != nil {
					t.Fatalf("allocation does not re-encode: %v", err)
				}
			}
		}
		var ms pluginv1.NodeMetricsResponse
		if proto.Unmarshal(b, &ms) == nil {
			if ml, err := metricsFromProto(ms.GetMetrics()); err == nil {
				if _, err := metricsFromProto(metricsToProto(ml)); err != nil {
					t.Fatalf("metrics do not re-encode: %v", err)
				}
			}
		}
	})
}
