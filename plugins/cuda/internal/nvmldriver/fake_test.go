package nvmldriver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

const fixture8GPU = "../../testdata/nvml-8xA100-2numa.toml"

func TestParseFakeSpec(t *testing.T) {
	const gpu = `
[[gpu]]
uuid = "GPU-a"
name = "NVIDIA T4"
memory = "16GiB"
multiprocessors = 40
compute_capability = "7.5"
pci_bus_id = "00000000:3B:00.0"
`
	tests := []struct {
		description string
		input       string
		wantErr     string
		check       func(t *testing.T, s FakeSpec)
	}{
		{
			description: "one GPU with sizes in binary units",
			input:       gpu,
			check: func(t *testing.T, s FakeSpec) {
				if len(s.GPUs) != 1 || s.GPUs[0].Memory != 16<<30 || s.GPUs[0].Multiprocessors != 40 {
					t.Fatalf("got %+v", s.GPUs)
				}
				if s.GPUs[0].Utilization != nil {
					t.Fatalf("absent utilization must stay nil (N/A), got %d", *s.GPUs[0].Utilization)
				}
			},
		},
		{description: "empty file is a node without GPUs", input: "", check: func(t *testing.T, s FakeSpec) {
			if len(s.GPUs) != 0 {
				t.Fatalf("got %d GPUs", len(s.GPUs))
			}
		}},
		{description: "unknown key is rejected", input: gpu + "colour = \"green\"\n", wantErr: "unknown keys"},
		{description: "duplicate UUID", input: gpu + strings.Replace(gpu, "3B", "3C", 1), wantErr: "used twice"},
		{description: "duplicate bus ID", input: gpu + strings.Replace(gpu, "GPU-a", "GPU-b", 1), wantErr: "pci_bus_id"},
		{description: "zero memory", input: strings.Replace(gpu, `"16GiB"`, `"0"`, 1), wantErr: "memory must be positive"},
		{description: "bad size", input: strings.Replace(gpu, `"16GiB"`, `"lots"`, 1), wantErr: "decode TOML"},
		{description: "bad compute capability", input: strings.Replace(gpu, `"7.5"`, `"sm75"`, 1), wantErr: "compute_capability"},
		{description: "bad bus ID", input: strings.Replace(gpu, `"00000000:3B:00.0"`, `"3b"`, 1), wantErr: "pci_bus_id"},
		{description: "utilization over 100", input: gpu + "utilization = 101\n", wantErr: "exceeds 100"},
		{description: "memory used over total", input: gpu + "memory_used = \"17GiB\"\n", wantErr: "exceeds memory"},
		{
			description: "MIG instance without MIG mode",
			input:       gpu + "[[gpu.mig]]\nuuid = \"MIG-a\"\nprofile = \"1g.5gb\"\nmemory = \"5GiB\"\nmultiprocessors = 14\n",
			wantErr:     "mig_enabled is false",
		},
		{
			description: "MIG profile must look like 1g.10gb",
			input:       gpu + "mig_enabled = true\n[[gpu.mig]]\nuuid = \"MIG-a\"\nprofile = \"small\"\nmemory = \"5GiB\"\nmultiprocessors = 14\n",
			wantErr:     "profile",
		},
		{description: "UUID with a comma would break resource.txt", input: strings.Replace(gpu, "GPU-a", "GPU,a", 1), wantErr: "uuid"},
		{description: "process without PID", input: gpu + "[[gpu.processes]]\npid = 0\nused_memory = \"1g\"\n", wantErr: "pid"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			spec, err := ParseFakeSpec([]byte(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, spec)
		})
	}
}

func TestLoadFakeSpecFixtures(t *testing.T) {
	tests := []struct {
		description string
		path        string
		gpus        int
		migs        int
	}{
		{description: "8 GPUs over 2 NUMA nodes, one with MIG", path: fixture8GPU, gpus: 8, migs: 4},
		{description: "dev config's 2 x A100", path: "../../../../configs/fixtures/cuda-2xA100.toml", gpus: 2, migs: 0},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			spec, err := LoadFakeSpec(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			migs := 0
			for _, g := range spec.GPUs {
				migs += len(g.Mig)
			}
			if len(spec.GPUs) != tc.gpus || migs != tc.migs {
				t.Fatalf("got %d GPUs and %d MIG instances, want %d and %d", len(spec.GPUs), migs, tc.gpus, tc.migs)
			}
		})
	}
	if _, err := LoadFakeSpec(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: error = %v, want os.ErrNotExist", err)
	}
}

func TestNormalizeBusID(t *testing.T) {
	tests := []struct{ description, in, want string }{
		{"NVML's 8-digit domain becomes sysfs' 4 digits", "00000000:07:00.0", "0000:07:00.0"},
		{"upper-case hex is lowered", "00000000:BD:00.0", "0000:bd:00.0"},
		{"already sysfs form", "0000:87:00.0", "0000:87:00.0"},
		{"a wide domain keeps its digits", "00010000:01:00.0", "10000:01:00.0"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if got := NormalizeBusID(tc.in); got != tc.want {
				t.Fatalf("NormalizeBusID(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestClientAggregatesMIG(t *testing.T) {
	spec, err := LoadFakeSpec(fixture8GPU)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fake := NewFake(spec)
	if err := fake.Init(ctx); err != nil {
		t.Fatal(err)
	}
	gpus, err := NewClient(fake).GPUs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parent := spec.GPUs[5]
	whole, migs := 0, 0
	for _, g := range gpus {
		if g.UUID == parent.UUID {
			t.Fatalf("MIG-enabled parent %s must not be listed", parent.UUID)
		}
		if g.IsMig() {
			migs++
			if g.Mig.ParentUUID != parent.UUID || g.Index != 5 || g.PCIBusID != parent.PCIBusID {
				t.Fatalf("MIG instance %+v not tied to its parent", g)
			}
			if !strings.HasSuffix(g.Name, "MIG "+g.Mig.Profile) {
				t.Fatalf("MIG name %q lacks its profile", g.Name)
			}
			continue
		}
		whole++
	}
	if whole != 7 || migs != 4 {
		t.Fatalf("got %d whole GPUs and %d MIG instances, want 7 and 4", whole, migs)
	}
}

func TestFakeEvents(t *testing.T) {
	fake := NewFake(FakeSpec{})
	ctx := context.Background()
	if _, ok, err := fake.WaitEvent(ctx, 5*time.Millisecond); ok || err != nil {
		t.Fatalf("no event queued: ok=%v err=%v", ok, err)
	}
	want := Event{DeviceUUID: "GPU-x", Kind: EventXid, Xid: 79}
	fake.InjectEvent(want)
	got, ok, err := fake.WaitEvent(ctx, time.Second)
	if err != nil || !ok || got != want {
		t.Fatalf("got %+v ok=%v err=%v, want %+v", got, ok, err, want)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := fake.WaitEvent(cancelled, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: err = %v", err)
	}
}

func TestFakeRequiresInit(t *testing.T) {
	fake := NewFake(FakeSpec{GPUs: []FakeGPU{{UUID: "GPU-a"}}})
	if _, err := fake.DeviceCount(context.Background()); err == nil {
		t.Fatal("DeviceCount before Init must fail, as NVML does")
	}
}

func TestMultiprocessorsFromCores(t *testing.T) {
	tests := []struct {
		description string
		cores       int
		cc          string
		want        uint32
	}{
		{"A100: 6912 cores at 64 per SM", 6912, "8.0", 108},
		{"RTX 4090: 16384 cores at 128 per SM", 16384, "8.9", 128},
		{"V100: 5120 cores at 64 per SM", 5120, "7.0", 80},
		{"unknown architecture", 1000, "99.0", 0},
		{"no core count", 0, "8.0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			if got := MultiprocessorsFromCores(tc.cores, tc.cc); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// A library path that does not exist behaves like a node without the
// NVIDIA driver in both cgo and non-cgo builds.
func TestRealDriverWithoutLibrary(t *testing.T) {
	d := NewNVML(filepath.Join(t.TempDir(), "libnvidia-ml.so.1"))
	err := d.Init(context.Background())
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("Init error = %v, want ErrLibraryNotFound", err)
	}
}

// FuzzLoadFakeSpec feeds files from disk to the loader: it must never
// panic, and an accepted spec must survive a write/read round trip.
func FuzzLoadFakeSpec(f *testing.F) {
	for _, seed := range []string{fixture8GPU, "../../../../configs/fixtures/cuda-2xA100.toml"} {
		data, err := os.ReadFile(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[[gpu]]\nuuid = \"GPU-a\"\n"))
	f.Add([]byte("driver_version = 1\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fake.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		spec, err := LoadFakeSpec(path)
		if err != nil {
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate: %v", err)
		}
		first, err := toml.Marshal(spec)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		again, err := ParseFakeSpec(first)
		if err != nil {
			t.Fatalf("re-reading the written spec: %v\n%s", err, first)
		}
		second, err := toml.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the spec:\n%s\n---\n%s", first, second)
		}
	})
}
