// Command package builds baiagent's .deb and release archive from binaries
// already built by scripts/build.sh. scripts/package.sh drives it.
//
// It is a module of its own, outside go.work: nfpm's dependency tree would
// otherwise join the workspace's version selection and could move the
// agent's own dependencies. Run it with GOWORK=off.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	root := flag.String("root", ".", "repository root")
	bin := flag.String("bin", "bin", "directory scripts/build.sh built into (relative to -root)")
	out := flag.String("out", "dist", "output directory (relative to -root)")
	version := flag.String("version", "", "package version (required; package.sh passes the built agent's)")
	arch := flag.String("arch", "amd64", "Debian architecture")
	flag.Parse()
	if *version == "" {
		fmt.Fprintln(os.Stderr, "package: -version is required")
		os.Exit(2)
	}
	if err := run(*root, *bin, *out, *version, *arch); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run(root, bin, out, version, arch string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	bin, out = abs(bin), abs(out)
	stage, err := os.MkdirTemp("", "baiagent-stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := fillStage(root, bin, stage); err != nil {
		return err
	}
	// nfpm resolves the config's relative sources against the working dir.
	if err := os.Chdir(stage); err != nil {
		return err
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join(root, "configs/package/nfpm.yaml"), func(k string) string {
		switch k {
		case "VERSION":
			return version
		case "ARCH":
			return arch
		}
		return ""
	})
	if err != nil {
		return fmt.Errorf("parse nfpm.yaml: %w", err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return fmt.Errorf("nfpm contents: %w", err)
	}
	deps, err := runtimeDepends(info.Contents)
	if err != nil {
		return err
	}
	info.Depends = deps
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	debPath := filepath.Join(out, packager.ConventionalFileName(info))
	if err := writeFile(debPath, func(w io.Writer) error { return packager.Package(info, w) }); err != nil {
		return fmt.Errorf("build %s: %w", debPath, err)
	}
	// The archive holds the .deb's tree under one top directory, so
	// `tar -xzf ... -C / --strip-components=1` installs the same files.
	top := fmt.Sprintf("baiagent-%s-linux-%s", version, arch) // as given: nfpm splits off the prerelease
	tgzPath := filepath.Join(out, top+".tar.gz")
	if err := writeFile(tgzPath, func(w io.Writer) error { return writeArchive(w, top, info) }); err != nil {
		return fmt.Errorf("build %s: %w", tgzPath, err)
	}
	for _, p := range []string{debPath, tgzPath} {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		fmt.Printf("%s (%.1f MiB)\n", p, float64(st.Size())/(1<<20))
	}
	fmt.Printf("Depends: %s\n", strings.Join(deps, ", "))
	fmt.Printf("Recommends: %s\n", strings.Join(info.Recommends, ", "))
	return nil
}

// fillStage copies the built binaries into stage and writes the sample
// config and systemd units rewritten for the packaged paths.
func fillStage(root, bin, stage string) error {
	copies := map[string]string{
		filepath.Join(bin, "baiagent"):                                  "baiagent",
		filepath.Join(bin, "baiagent-kernel-runner"):                    "baiagent-kernel-runner",
		filepath.Join(bin, "baiagent-etcd"):                             "baiagent-etcd",
		filepath.Join(root, "configs/package/postinst.sh"):              "postinst.sh",
		filepath.Join(root, "configs/systemd/baiagent.service"):         "systemd/baiagent.service",
		filepath.Join(root, "configs/systemd/baiagent-watcher.service"): "systemd/baiagent-watcher.service",
	}
	plugins, err := filepath.Glob(filepath.Join(bin, "plugins", "baiagent-plugin-*"))
	if err != nil {
		return err
	}
	if len(plugins) == 0 {
		return fmt.Errorf("no plugins in %s/plugins: run scripts/build.sh first", bin)
	}
	for _, p := range plugins {
		copies[p] = filepath.Join("plugins", filepath.Base(p))
	}
	for src, dst := range copies {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		if strings.HasPrefix(dst, "systemd/") {
			// The units in configs/ are for a source install (/usr/local/bin).
			if data, err = replaceOnce(data, "ExecStart=/usr/local/bin/baiagent ", "ExecStart=/usr/bin/baiagent "); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
		}
		if err := writeStaged(stage, dst, data); err != nil {
			return err
		}
	}
	// agent.plugin-dirs: the packaged plugins first, then the default
	// /usr/local one for plugins an operator adds by hand.
	sample, err := os.ReadFile(filepath.Join(root, "configs/agent.toml"))
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	sample, err = replaceOnce(sample,
		"\nplugin-dirs = [\"/usr/local/lib/baiagent/plugins\"]\n",
		"\n# The package installs its plugins in /usr/lib/baiagent/plugins; put\n"+
			"# others in /usr/local/lib/baiagent/plugins (the default without this key).\n"+
			"plugin-dirs = [\"/usr/lib/baiagent/plugins\", \"/usr/local/lib/baiagent/plugins\"]\n")
	if err != nil {
		return fmt.Errorf("configs/agent.toml: %w", err)
	}
	return writeStaged(stage, "agent.toml", sample)
}

func replaceOnce(data []byte, old, new string) ([]byte, error) {
	if n := bytes.Count(data, []byte(old)); n != 1 {
		return nil, fmt.Errorf("expected %q once, found it %d times", strings.TrimSpace(old), n)
	}
	return bytes.Replace(data, []byte(old), []byte(new), 1), nil
}

func writeStaged(stage, rel string, data []byte) error {
	path := filepath.Join(stage, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o755)
}

func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := fill(w); err != nil {
		_ = f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// runtimeDepends is the sorted set of Debian packages owning the shared
// libraries the package's ELF files link directly (DT_NEEDED), each found
// where ldd resolves it on this machine and mapped with dpkg -S: what
// dpkg-shlibdeps would say, without version bounds. Libraries those
// libraries need come with their own packages' Depends.
func runtimeDepends(contents files.Contents) ([]string, error) {
	set := map[string]bool{}
	for _, c := range contents {
		if c.Type != files.TypeFile || c.Source == "" {
			continue
		}
		pkgs, err := ELFDepends(c.Source)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Destination, err)
		}
		for _, p := range pkgs {
			set[p] = true
		}
	}
	deps := make([]string, 0, len(set))
	for p := range set {
		deps = append(deps, p)
	}
	sort.Strings(deps)
	return deps, nil
}

// ELFDepends returns the packages owning path's DT_NEEDED libraries; nil
// for a static executable or a file that is not ELF.
func ELFDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil, nil
		}
		return nil, err
	}
	needed, err := f.ImportedLibraries()
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("read DT_NEEDED: %w", err)
	}
	if len(needed) == 0 {
		return nil, nil
	}
	resolved, err := lddPaths(path)
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, lib := range needed {
		p, ok := resolved[lib]
		if !ok {
			return nil, fmt.Errorf("ldd does not resolve %s (install its -dev package's runtime library)", lib)
		}
		pkg, err := dpkgOwner(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lib, err)
		}
		if !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
	}
	return pkgs, nil
}

// lddPaths maps each library ldd lists for path to the file it resolves to.
func lddPaths(path string) (map[string]string, error) {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd: %w", err)
	}
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			m[f[0]] = f[2] // libfoo.so.1 => /lib/.../libfoo.so.1 (0x...)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			m[filepath.Base(f[0])] = f[0] // /lib64/ld-linux-x86-64.so.2 (0x...)
		}
	}
	return m, nil
}

// dpkgOwner is the package dpkg -S names for path, trying the path's
// merged-/usr twin and its resolved target when dpkg knows it by another
// name.
func dpkgOwner(path string) (string, error) {
	candidates := []string{path}
	if rest, ok := strings.CutPrefix(path, "/usr"); ok {
		candidates = append(candidates, rest)
	} else {
		candidates = append(candidates, "/usr"+path)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		candidates = append(candidates, real)
	}
	var lastErr error
	for _, c := range candidates {
		out, err := exec.Command("dpkg", "-S", c).Output()
		if err != nil {
			lastErr = err
			continue
		}
		// "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
		line, _, _ := strings.Cut(string(out), "\n")
		owner, _, ok := strings.Cut(line, ": ")
		if !ok || strings.Contains(owner, ",") {
			return "", fmt.Errorf("dpkg -S %s: unexpected answer %q", c, line)
		}
		name, _, _ := strings.Cut(owner, ":")
		return name, nil
	}
	return "", fmt.Errorf("no package owns %s (dpkg -S): %w", path, lastErr)
}

// writeArchive writes info's files, directories and symlinks as a tar.gz
// under top/, with the modes the .deb gives them and owned by root.
func writeArchive(w io.Writer, top string, info *nfpm.Info) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	contents := slices.Clone(info.Contents)
	sort.Slice(contents, func(i, j int) bool { return contents[i].Destination < contents[j].Destination })
	// nfpm leaves MTime at the epoch unless SOURCE_DATE_EPOCH is set.
	mtime := info.MTime
	if mtime.Unix() <= 0 {
		mtime = time.Now()
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755, ModTime: mtime, Uname: "root", Gname: "root"}); err != nil {
		return err
	}
	for _, c := range contents {
		name := top + "/" + strings.TrimPrefix(c.Destination, "/")
		hdr := &tar.Header{Name: name, Mode: int64(c.Mode().Perm()), ModTime: mtime, Uname: "root", Gname: "root"}
		switch c.Type {
		case files.TypeDir, files.TypeImplicitDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, strings.TrimSuffix(name, "/")+"/"
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		case files.TypeSymlink:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, c.Source, 0o777
		case files.TypeFile, files.TypeConfig, files.TypeConfigNoReplace:
			data, err := os.ReadFile(c.Source)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("%s: content type %q has no archive form", c.Destination, c.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
