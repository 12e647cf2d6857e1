package stats

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/heartbeat"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/presence"
	"github.com/baiagent/baiagent/host/internal/redistest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
	"github.com/baiagent/baiagent/proto/sdk"
)

// BenchmarkStatsRound50Kernels measures the agent's own CPU time (user +
// system of this process, from getrusage; the plugin subprocesses are not
// counted) for one reporting round with 50 running kernels: a heartbeat
// (through the event bus with its outage queue, with installed_image for
// 30 images), node stats, container stats, container_count and the
// presence marks, against the real cpu and cuda plugin subprocesses and a
// real Redis. The kernels are
// fake below the ContainersFunc seam: 50 targets on the cpu plugin's v2
// cgroup fixture, each with its own /proc/<pid>/net/dev and environ (two of
// them hold the two fake GPUs).
func BenchmarkStatsRound50Kernels(b *testing.B) {
	const kernels = 50
	srv := redistest.Start(b, false)
	statDB := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.StatisticsDB)
	liveDB := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.LiveDB)
	b.Cleanup(func() { _ = statDB.Close(); _ = liveDB.Close() })
	repo, err := filepath.Abs("../../..")
	if err != nil {
		b.Fatal(err)
	}
	cpuFixture := filepath.Join(repo, "plugins/cpu/testdata/v2host")
	dir := testutil.ShortTempDir(b)
	testutil.BuildBinary(b, "github.com/baiagent/baiagent/plugins/cpu/cmd/baiagent-plugin-cpu", dir, pluginhost.ExecutablePrefix+"cpu")
	testutil.BuildBinary(b, "github.com/baiagent/baiagent/plugins/cuda/cmd/baiagent-plugin-cuda", dir, pluginhost.ExecutablePrefix+"cuda")

	procfs := b.TempDir()
	for _, name := range []string{"meminfo", "stat", "filesystems"} {
		copyFile(b, filepath.Join(cpuFixture, "proc", name), filepath.Join(procfs, name))
	}
	copyFile(b, filepath.Join(cpuFixture, "proc/self/mounts"), filepath.Join(procfs, "self/mounts"))
	copyFile(b, filepath.Join(cpuFixture, "proc/net/dev"), filepath.Join(procfs, "net/dev"))
	gpuUUIDs := []string{"GPU-3b0e8f52-1c4d-4a7e-9d21-a10080gb0000", "GPU-3b0e8f52-1c4d-4a7e-9d21-a10080gb0001"}
	targets := make([]ContainerTarget, kernels)
	ids := make([]string, kernels)
	for i := range targets {
		pid := 5000 + i
		copyFile(b, filepath.Join(cpuFixture, "proc/4001/net/dev"), filepath.Join(procfs, strconv.Itoa(pid), "net/dev"))
		env := "PATH=/usr/bin\x00"
		if i < len(gpuUUIDs) {
			env += "NVIDIA_VISIBLE_DEVICES=" + gpuUUIDs[i] + "\x00"
		}
		if err := os.WriteFile(filepath.Join(procfs, strconv.Itoa(pid), "environ"), []byte(env), 0o644); err != nil {
			b.Fatal(err)
		}
		ids[i] = "k" + strconv.Itoa(i)
		targets[i] = ContainerTarget{KernelID: ids[i], ContainerID: "c" + strconv.Itoa(i), PID: pid,
			CgroupPath: "system.slice/docker-4f1c9a.scope"}
	}

	host := pluginhost.New(pluginhost.Options{
		Dirs: []string{dir}, RuntimeDir: testutil.ShortTempDir(b), Logger: zerolog.Nop(),
		PluginConfig: map[string]map[string]any{
			"cpu": {"sysfs-root": filepath.Join(cpuFixture, "sys"), "procfs-root": procfs,
				"cgroup-root": filepath.Join(cpuFixture, "cgroup")},
			"cuda": {"fake-devices": filepath.Join(repo, "configs/fixtures/cuda-2xA100.toml"),
				"sysfs-root": filepath.Join(repo, "configs/fixtures/sysfs-2xA100"), "procfs-root": procfs},
		},
		Agent: sdk.AgentInfo{AgentID: "i-bench", DockerVersion: "27.3.1", DockerRuntimes: []string{"runc", "nvidia"}},
	})
	ctx := context.Background()
	if err := host.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(host.Stop)
	for _, name := range []string{"cpu", "cuda"} {
		if _, _, ok := host.Plugin(name); !ok {
			b.Fatalf("%s plugin not running: %+v", name, host.Statuses())
		}
	}
	col, err := New(Options{AgentID: "i-bench", Redis: statDB, Plugins: host, Logger: zerolog.Nop(),
		Containers: func(context.Context) ([]ContainerTarget, error) { return targets, nil }})
	if err != nil {
		b.Fatal(err)
	}
	marks, err := presence.New(presence.Options{Redis: liveDB, Logger: zerolog.Nop(),
		Kernels: func(context.Context) ([]string, error) { return ids, nil }})
	if err != nil {
		b.Fatal(err)
	}
	bus, err := events.New(ctx, events.Options{AgentID: "i-bench", Redis: &events.RedisOptions{Addr: srv.Addr},
		QueueDir: b.TempDir(), Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bus.Close() })
	imageDB := events.NewRedisClient(events.RedisOptions{Addr: srv.Addr}, events.ImageDB)
	b.Cleanup(func() { _ = imageDB.Close() })
	info := heartbeat.Info{IP: "10.0.0.1", RPCAddr: "10.0.0.1:6001", Architecture: "x86_64", Version: "26.8.1",
		Slots: []heartbeat.Slot{{Name: "cpu", Unit: "count", Available: decimal.NewFromInt(64)},
			{Name: "mem", Unit: "bytes", Available: decimal.NewFromInt(512 << 30)},
			{Name: "cuda.device", Unit: "count", Available: decimal.NewFromInt(2)}},
		ComputePlugins: []heartbeat.ComputePlugin{{Key: "cpu", Version: "1"}, {Key: "cuda", Version: "1"}}}
	for i := range 30 {
		info.Images = append(info.Images, heartbeat.Image{Canonical: "cr.backend.ai/stable/python:3." + strconv.Itoa(i),
			Digest: "sha256:" + strconv.Itoa(1e9+i), Architecture: "x86_64"})
	}
	beat := heartbeat.Options{AgentID: "i-bench", Bus: bus, Images: imageDB, Logger: zerolog.Nop(),
		Source: heartbeat.SourceFunc(func(context.Context) (heartbeat.Info, error) { return info, nil })}
	round := func() {
		if err := heartbeat.Beat(ctx, beat); err != nil {
			b.Fatal(err)
		}
		if err := col.CollectNode(ctx); err != nil {
			b.Fatal(err)
		}
		if err := col.CollectContainers(ctx); err != nil {
			b.Fatal(err)
		}
		if err := col.WriteContainerCount(ctx); err != nil {
			b.Fatal(err)
		}
		if n, err := marks.Report(ctx); err != nil || n != kernels {
			b.Fatalf("presence: %d, %v", n, err)
		}
	}
	round() // warm up: connections, first samples
	raw, err := statDB.Get(ctx, "k0").Bytes()
	if err != nil {
		b.Fatal(err)
	}
	v, err := wiremsg.Unmarshal(raw)
	if m, ok := v.(wiremsg.Map); err != nil || !ok || m["cuda_util"] == nil || m["net_rx"] == nil {
		b.Fatalf("k0 lacks cuda_util or net_rx: %v, %v", v, err)
	}

	start := cpuTime(b)
	for b.Loop() {
		round()
	}
	used := cpuTime(b) - start
	b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), "cpu-ms/round")
}

// cpuTime is this process's user + system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}
