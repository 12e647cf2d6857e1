package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/kernel/kerneltest"
	"github.com/baiagent/baiagent/host/internal/testutil"
	"github.com/baiagent/baiagent/proto/sdk"
)

const testVersion = "0.0.0-pkgtest"

// TestDebInstallsInCleanDebian builds the .deb and archive with
// scripts/package.sh, checks the declared Depends against what the
// binaries link and Recommends (e2fsprogs, for hostfile scratch), and
// installs the .deb with dpkg -i in a Debian container made by
// debootstrap (kerneltest's cached python image), with the dependency
// packages copied in from the host's apt cache: the container reaches no
// registry. There it runs baiagent version, config check and plugins list.
func TestDebInstallsInCleanDebian(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "ldd", "apt-get", "apt-cache"} {
		testutil.RequireTool(t, tool, "needed to build and check the .deb")
	}
	docker := kerneltest.Docker(t)
	image := kerneltest.BuildPython(t, docker)

	work := t.TempDir()
	dist := filepath.Join(work, "dist")
	build := exec.Command("../../../scripts/package.sh")
	build.Env = append(os.Environ(), "VERSION="+testVersion, "BIN="+filepath.Join(work, "bin"), "OUT="+dist)
	start := time.Now()
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, out)
	}
	t.Logf("package.sh took %s:\n%s", time.Since(start).Round(time.Second), out)
	debs, _ := filepath.Glob(filepath.Join(dist, "baiagent_*.deb"))
	tgzs, _ := filepath.Glob(filepath.Join(dist, "baiagent-*.tar.gz"))
	if len(debs) != 1 || len(tgzs) != 1 {
		t.Fatalf("dist holds %v %v, want one .deb and one .tar.gz", debs, tgzs)
	}
	deb := debs[0]
	for _, p := range []string{deb, tgzs[0]} {
		if st, err := os.Stat(p); err == nil {
			t.Logf("%s: %.1f MiB", filepath.Base(p), float64(st.Size())/(1<<20))
		}
	}

	declared := debField(t, deb, "Depends")
	tree := filepath.Join(work, "tree")
	run(t, "dpkg-deb", "-x", deb, tree)
	needed := linkedPackages(t, tree)
	if !slices.Equal(declared, needed) {
		t.Errorf("Depends: %v, but the binaries link libraries of %v", declared, needed)
	}
	// hostfile scratch runs mkfs.ext4; the agent runs without it otherwise.
	if got := debField(t, deb, "Recommends"); !slices.Equal(got, []string{"e2fsprogs"}) {
		t.Errorf("Recommends: %v, want [e2fsprogs] (mkfs.ext4 for scratch-type hostfile)", got)
	}
	if slices.Contains(declared, "e2fsprogs") {
		t.Errorf("Depends %v holds e2fsprogs, which only the optional hostfile scratch needs", declared)
	}
	checkArchiveMatchesDeb(t, tgzs[0], deb)

	// Dependencies the image lacks, with theirs, as .debs from the host.
	installed := strings.Fields(runIn(t, docker, image, work, "dpkg-query -W -f '${Package}\\n'"))
	pkgDir := filepath.Join(work, "debs")
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range dependencyClosure(t, declared) {
		if !slices.Contains(installed, p) {
			missing = append(missing, p)
		}
	}
	fetchDebs(t, pkgDir, missing)
	t.Logf("Depends: %s; copied into the container: %v", strings.Join(declared, ", "), missing)
	if err := os.Rename(deb, filepath.Join(work, "baiagent.deb")); err != nil {
		t.Fatal(err)
	}

	script := `set -e
cd /pkg
if ls debs/*.deb >/dev/null 2>&1; then dpkg -i debs/*.deb >/dev/null; fi
dpkg -i baiagent.deb >/dev/null
echo "== version"
baiagent version
echo "== config"
baiagent config check -f /etc/backend.ai/agent.toml
echo "== plugins"
baiagent plugins list --log-level error -f /etc/backend.ai/agent.toml
echo "== etcd"
/usr/lib/baiagent/baiagent-etcd --data-dir /tmp/etcd --listen 127.0.0.1:23790 </dev/null 2>/dev/null
echo "== ldd"
for f in /usr/lib/baiagent/baiagent /usr/lib/baiagent/baiagent-etcd /usr/lib/baiagent/baiagent-kernel-runner /usr/lib/baiagent/plugins/*; do
  ldd "$f" 2>&1 | sed "s|^|$f: |"
done
`
	got := runIn(t, docker, image, work, script)
	section := func(name string) string {
		_, rest, _ := strings.Cut(got, "== "+name+"\n")
		s, _, _ := strings.Cut(rest, "\n== ")
		return strings.TrimSuffix(s, "\n") + "\n"
	}
	version := section("version")
	for _, want := range []string{"baiagent " + testVersion + "\n", "go: ", "plugin API: " + sdk.APIVersion + "\n"} {
		if !strings.Contains(version, want) {
			t.Errorf("baiagent version in the container printed\n%s\nwant %q in it", version, want)
		}
	}
	if strings.Contains(version, "commit: \n") || !strings.Contains(version, "commit: ") {
		t.Errorf("baiagent version prints no commit:\n%s", version)
	}
	if !strings.Contains(section("config"), `plugin-dirs = ['/usr/lib/baiagent/plugins', '/usr/local/lib/baiagent/plugins']`) {
		t.Errorf("config check of the packaged agent.toml:\n%s", section("config"))
	}
	// The packaged plugins are found through the packaged plugin-dirs and
	// start in a bare Debian (no GPU: their devices are simply absent).
	for _, name := range []string{"cpu", "cuda", "rocm", "tpu"} {
		want := "/usr/lib/baiagent/plugins/baiagent-plugin-" + name
		found := false
		for line := range strings.Lines(section("plugins")) {
			if strings.Contains(line, want) && strings.Contains(line, " running ") {
				found = true
			}
		}
		if !found {
			t.Errorf("plugins list shows no running %s from %s:\n%s", name, want, section("plugins"))
		}
	}
	// The embedded etcd starts, says it serves, and stops when its stdin
	// (here /dev/null) has ended.
	if got := section("etcd"); got != `{"endpoint":"127.0.0.1:23790"}`+"\n" {
		t.Errorf("baiagent-etcd in the container printed %q, want its ready line", got)
	}
	if ldd := section("ldd"); strings.Contains(ldd, "not found") {
		t.Errorf("a library is missing after installing the declared Depends:\n%s", ldd)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %v: %v\n%s", name, args, err, ee.Stderr)
		}
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// debField is a relation field of the .deb (Depends, Recommends), package
// names only, sorted.
func debField(t *testing.T, deb, field string) []string {
	t.Helper()
	var names []string
	for _, d := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)), ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(d), " "); name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// linkedPackages is the sorted set of packages (dpkg -S) owning the
// libraries every ELF file in tree links directly, resolved by ldd. It also
// checks the kernel runner and every plugin but cuda are static.
func linkedPackages(t *testing.T, tree string) []string {
	t.Helper()
	set := map[string]bool{}
	err := filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := elf.Open(path)
		if err != nil {
			return nil // not ELF
		}
		libs, err := f.ImportedLibraries()
		_ = f.Close()
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(path, tree)
		name := filepath.Base(path)
		if name == "baiagent-kernel-runner" || (strings.HasPrefix(name, "baiagent-plugin-") && name != "baiagent-plugin-cuda") {
			if len(libs) > 0 {
				t.Errorf("%s links %v, want a static executable", rel, libs)
			}
		}
		if len(libs) == 0 {
			return nil
		}
		resolved := map[string]string{}
		for line := range strings.Lines(run(t, "ldd", path)) {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				resolved[f[0]] = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				resolved[filepath.Base(f[0])] = f[0]
			}
		}
		for _, lib := range libs {
			p, ok := resolved[lib]
			if !ok {
				t.Errorf("%s: ldd does not resolve %s", rel, lib)
				continue
			}
			pkg := dpkgOwner(t, p)
			t.Logf("%s: %s -> %s (%s)", rel, lib, p, pkg)
			set[pkg] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pkgs := make([]string, 0, len(set))
	for p := range set {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}

// dpkgOwner is the package owning path, which dpkg may know under its
// merged-/usr twin (/lib/x/libfoo.so.1 as /usr/lib/x/libfoo.so.1).
func dpkgOwner(t *testing.T, path string) string {
	t.Helper()
	twin := "/usr" + path
	if rest, ok := strings.CutPrefix(path, "/usr"); ok {
		twin = rest
	}
	for _, p := range []string{path, twin} {
		if out, err := exec.Command("dpkg", "-S", p).Output(); err == nil {
			pkg, _, _ := strings.Cut(string(out), ":")
			return pkg
		}
	}
	t.Fatalf("dpkg -S: no package owns %s or %s", path, twin)
	return ""
}

// checkArchiveMatchesDeb: the release archive holds the .deb's tree under
// one top directory.
func checkArchiveMatchesDeb(t *testing.T, tgz, deb string) {
	t.Helper()
	var debPaths []string
	for line := range strings.Lines(run(t, "dpkg-deb", "-c", deb)) {
		f := strings.Fields(line)
		if len(f) >= 6 {
			debPaths = append(debPaths, strings.TrimSuffix(strings.TrimPrefix(f[5], "./"), "/"))
		}
	}
	fh, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var tarPaths []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(strings.TrimSuffix(hdr.Name, "/"), "/")
		if rest != "" {
			tarPaths = append(tarPaths, rest)
		}
	}
	sort.Strings(debPaths)
	sort.Strings(tarPaths)
	if !slices.Equal(debPaths, tarPaths) {
		t.Errorf("archive holds\n%v\nthe .deb\n%v", tarPaths, debPaths)
	}
}

// dependencyClosure is pkgs with everything they depend on (Depends and
// Pre-Depends, recursively), as the host's apt knows them.
func dependencyClosure(t *testing.T, pkgs []string) []string {
	t.Helper()
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, pkgs...)
	var closure []string
	for line := range strings.Lines(run(t, "apt-cache", args...)) {
		name := strings.TrimSpace(line)
		// Indented lines are relations; <name> is a virtual package.
		if line == "" || line[0] == ' ' || strings.HasPrefix(name, "<") || slices.Contains(closure, name) {
			continue
		}
		closure = append(closure, name)
	}
	return closure
}

// fetchDebs puts each package's .deb into dir, from /var/cache/apt/archives
// when it is there, else with apt-get download (from the host's own
// mirror; the container reaches none).
func fetchDebs(t *testing.T, dir string, pkgs []string) {
	t.Helper()
	for _, p := range pkgs {
		cached, _ := filepath.Glob(filepath.Join("/var/cache/apt/archives", p+"_*.deb"))
		if len(cached) > 0 {
			data, err := os.ReadFile(cached[len(cached)-1])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(cached[len(cached)-1])), data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		cmd := exec.Command("apt-get", "download", "-q", p)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			testutil.Need(t, "apt-get download "+p+" (the container's dependency packages come from the host): "+err.Error()+"\n"+string(out))
		}
	}
}

// runIn runs script with sh in a fresh container of image, dir mounted at
// /pkg, and returns what it printed; a non-zero exit fails the test.
func runIn(t *testing.T, docker *client.Client, image, dir, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wrapped := "(" + script + ") >/pkg/run.log 2>&1; echo $? >/pkg/run.rc"
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: []string{"/bin/sh", "-c", wrapped}},
		HostConfig: &container.HostConfig{Binds: []string{dir + ":/pkg"}, NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	}()
	wait := docker.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "run.log"))
	rc, _ := os.ReadFile(filepath.Join(dir, "run.rc"))
	if !bytes.Equal(bytes.TrimSpace(rc), []byte("0")) {
		t.Fatalf("in the container (exit %q):\n%s\n%s", bytes.TrimSpace(rc), script, log)
	}
	return string(log)
}
