// Package kerneltest holds the helpers of the kernel tests that run
// against the real Docker engine: the engine itself, a busybox image built
// locally (no registry is reachable), the static kernel runner and the real
// cpu plugin.
package kerneltest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/alloc"
	"github.com/baiagent/baiagent/host/internal/pluginhost"
	"github.com/baiagent/baiagent/host/internal/portpool"
	"github.com/baiagent/baiagent/host/internal/resources"
	"github.com/baiagent/baiagent/host/internal/testutil"
)

// BusyboxImage is the tag of the test image.
const BusyboxImage = "baiagent-test/busybox:latest"

// BusyboxLabels are the labels of BusyboxImage, as upstream images carry
// them: runtime-type shell, a service "web" on port 8080.
func BusyboxLabels() map[string]string {
	return map[string]string{
		"ai.backend.kernelspec": "1", "ai.backend.runtime-type": "shell",
		"ai.backend.runtime-path": "/bin/sh", "ai.backend.service-ports": "web:http:8080",
	}
}

// Docker connects to the local engine. Outside CI a missing engine skips
// the test; in CI (CI set) it fails it.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		testutil.Need(t, fmt.Sprintf("Docker engine unreachable: %v", err))
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// BuildBusybox builds BusyboxImage from the host's static busybox (Debian's
// busybox-static): FROM scratch, /bin/busybox plus an applet link for each
// of its commands, and a world-writable /tmp, with BusyboxLabels.
func BuildBusybox(t testing.TB, docker *client.Client) string {
	t.Helper()
	busybox := findStaticBusybox(t)
	applets, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	now := time.Now()
	add := func(h *tar.Header, body []byte) {
		h.ModTime = now
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if len(body) > 0 {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	labels := BusyboxLabels()
	var labelLine strings.Builder
	for _, key := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&labelLine, " %s=%q", key, labels[key])
	}
	dockerfile := []byte("FROM scratch\nCOPY rootfs/ /\nLABEL" + labelLine.String() + "\n")
	add(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}, dockerfile)
	for _, dir := range []string{"rootfs/", "rootfs/bin/", "rootfs/etc/", "rootfs/home/", "rootfs/home/work/"} {
		add(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	}
	add(&tar.Header{Name: "rootfs/tmp/", Mode: 0o1777, Typeflag: tar.TypeDir}, nil)
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:work:/home/work:/bin/sh\n")
	add(&tar.Header{Name: "rootfs/etc/passwd", Mode: 0o644, Size: int64(len(passwd)), Typeflag: tar.TypeReg}, passwd)
	add(&tar.Header{Name: "rootfs/bin/busybox", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}, data)
	sc := bufio.NewScanner(bytes.NewReader(applets))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		add(&tar.Header{Name: "rootfs/bin/" + name, Linkname: "busybox", Mode: 0o777, Typeflag: tar.TypeSymlink}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := docker.ImageBuild(ctx, &ctxTar, client.ImageBuildOptions{
		Tags: []string{BusyboxImage}, Remove: true, ForceRemove: true, Dockerfile: "Dockerfile",
	})
	if err != nil {
		t.Fatalf("build %s: %v", BusyboxImage, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			break
		}
		if msg.Error != "" {
			t.Fatalf("build %s: %s", BusyboxImage, msg.Error)
		}
	}
	if _, err := docker.ImageInspect(context.Background(), BusyboxImage); err != nil {
		t.Fatalf("image %s missing after build: %v", BusyboxImage, err)
	}
	return BusyboxImage
}

func findStaticBusybox(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			out, _ := exec.Command("file", "-L", p).Output()
			if len(out) == 0 || bytes.Contains(out, []byte("statically linked")) || bytes.Contains(out, []byte("static-pie")) {
				return p
			}
		}
	}
	testutil.Need(t, "a static busybox is needed to build the test image (apt-get install busybox-static)")
	return ""
}

// RunnerBinary builds the static kernel runner into a temp dir.
func RunnerBinary(t testing.TB) string {
	t.Helper()
	return testutil.BuildBinary(t, "github.com/baiagent/baiagent/host/cmd/baiagent-kernel-runner", t.TempDir(), "baiagent-kernel-runner")
}

// CPUPlugin starts the real cpu plugin under a plugin host and builds the
// allocator over its devices, as the agent does at start.
func CPUPlugin(t testing.TB) (*pluginhost.Host, *alloc.Allocator) {
	t.Helper()
	return Plugins(t, nil)
}

// WithFakeGPUs runs the cuda plugin too, on the dev config's two fake A100s
// (configs/fixtures) on NUMA nodes 0 and 1.
func WithFakeGPUs(t testing.TB) map[string]map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	fixtures := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "configs", "fixtures")
	return map[string]map[string]any{"cuda": {
		"fake-devices": filepath.Join(fixtures, "cuda-2xA100.toml"),
		"sysfs-root":   filepath.Join(fixtures, "sysfs-2xA100"),
	}}
}

// FakePlugin names the plugin host's test plugin in Plugins' config: kind
// "fake" with two devices of slot "fake.device", and its config keys
// "hook" and "network" come back in every container spec.
const FakePlugin = "fake"

// Plugins runs the cpu plugin, and each plugin named in config (built from
// plugins/<name>) with that configuration, and builds the allocator. A
// "cpu" entry configures the cpu plugin (e.g. cpu-overcommit-factor).
func Plugins(t testing.TB, config map[string]map[string]any) (*pluginhost.Host, *alloc.Allocator) {
	t.Helper()
	return PluginsAs(t, config, nil)
}

// PluginsAs is Plugins with some plugins built from another package than
// their name says (name -> Go package), so that a plugin's name can
// differ from its device kind as an operator's renamed binary does.
func PluginsAs(t testing.TB, config map[string]map[string]any, packages map[string]string) (*pluginhost.Host, *alloc.Allocator) {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	testutil.BuildBinary(t, "github.com/baiagent/baiagent/plugins/cpu/cmd/baiagent-plugin-cpu", dir, pluginhost.ExecutablePrefix+"cpu")
	for name := range config {
		if name == "cpu" {
			continue // built above; config only configures it
		}
		pkg := "github.com/baiagent/baiagent/plugins/" + name + "/cmd/baiagent-plugin-" + name
		if name == FakePlugin {
			pkg = "github.com/baiagent/baiagent/host/internal/pluginhost/testdata/fakeplugin"
		}
		if p, ok := packages[name]; ok {
			pkg = p
		}
		testutil.BuildBinary(t, pkg, dir, pluginhost.ExecutablePrefix+name)
	}
	host := pluginhost.New(pluginhost.Options{Dirs: []string{dir}, RuntimeDir: testutil.ShortTempDir(t), PluginConfig: config, Logger: zerolog.Nop()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := host.Start(ctx); err != nil {
		t.Fatalf("plugin host: %v", err)
	}
	t.Cleanup(host.Stop)
	var plugins []resources.Plugin
	for _, p := range host.Running() {
		plugins = append(plugins, resources.Plugin{Description: p.Description, Devices: p.Devices})
	}
	if len(plugins) == 0 {
		t.Fatalf("the cpu plugin is not running: %+v", host.Statuses())
	}
	return host, NewAllocator(t, host)
}

// NewAllocator builds a fresh allocator over the host's plugins, as a
// restarted agent does.
func NewAllocator(t testing.TB, host *pluginhost.Host) *alloc.Allocator {
	t.Helper()
	var plugins []resources.Plugin
	for _, p := range host.Running() {
		plugins = append(plugins, resources.Plugin{Description: p.Description, Devices: p.Devices})
	}
	specs, err := resources.MapSpecs(plugins)
	if err != nil {
		t.Fatal(err)
	}
	order, _ := resources.AllocationOrder(nil, specs)
	allocator, err := alloc.NewAllocator(alloc.Config{AllocationOrder: order}, specs)
	if err != nil {
		t.Fatal(err)
	}
	return allocator
}

// RemoveLabelled removes every container carrying label=value, for test
// cleanup.
func RemoveLabelled(t testing.TB, docker *client.Client, label, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label+"="+value)})
	if err != nil {
		t.Errorf("list test containers: %v", err)
		return
	}
	for _, c := range list.Items {
		if _, err := docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("remove test container %s: %v", c.ID, err)
		}
	}
}

// ScratchEntries lists what is left in a scratch root.
func ScratchEntries(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, filepath.Join(root, e.Name()))
	}
	return names
}

// Ports returns a port pool for test kernels: 100 ports at a random place
// below the kernel's ephemeral range (32768+, where outgoing connections
// would collide with published ports), skipping ports another program holds.
func Ports(t testing.TB) *portpool.Pool {
	t.Helper()
	return PortsAt(t, RandomPortBase())
}

// RandomPortBase picks the first port of a test pool (see Ports).
func RandomPortBase() int { return 20000 + rand.IntN(100)*100 }

// PortsAt is Ports over [min, min+99], for a test that needs the same range
// again (a restarted agent re-reserving its kernels' ports).
func PortsAt(t testing.TB, min int) *portpool.Pool {
	t.Helper()
	p, err := portpool.New(min, min+99, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.CheckWith(portpool.ListenProbe("0.0.0.0"))
	return p
}
