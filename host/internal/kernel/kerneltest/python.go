package kerneltest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/testutil"
)

// Python image labels, as upstream's python kernel images carry them.
const (
	PythonRuntimeType = "python"
	PythonRuntimePath = "/usr/bin/python3"
	// pythonImageVersion changes when the image's recipe changes, so a
	// cached image from an older recipe is not reused.
	pythonImageVersion = "v1"
)

// PythonImage is the tag BuildPython gives the image of a Debian suite.
func PythonImage(suite string) string {
	return "baiagent-test/python:" + suite + "-" + pythonImageVersion
}

// BuildPython returns a kernel image with a real python3: a Debian rootfs
// (debootstrap --variant=minbase --include=python3-minimal, from the
// host's own Debian mirror and suite) imported with upstream's labels
// (ai.backend.kernelspec 1, runtime-type python, runtime-path
// /usr/bin/python3). debootstrap takes minutes, so an image already tagged
// is reused. Without debootstrap (or root, which it needs) the test is
// skipped, or fails in CI (CI set), as Docker does.
func BuildPython(t testing.TB, docker *client.Client) string {
	t.Helper()
	mirror, suite := DebianMirror()
	image := PythonImage(suite)
	ctx := context.Background()
	if insp, err := docker.ImageInspect(ctx, image); err == nil && insp.Config != nil &&
		insp.Config.Labels["ai.backend.runtime-type"] == PythonRuntimeType {
		return image
	}
	debootstrap := findDebootstrap(t)
	rootfs := t.TempDir()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, debootstrap, "--variant=minbase", "--include=python3-minimal", suite, rootfs, mirror)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap %s from %s: %v\n%s", suite, mirror, err, tail(out, 4000))
	}
	// Nothing of the package manager's downloads, nor device nodes (Docker
	// gives every container its own /dev).
	tarCmd := exec.CommandContext(bctx, "tar", "--numeric-owner", "-C", rootfs,
		"--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
		"--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*", "-cf", "-", ".")
	stream, err := tarCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var tarErr strings.Builder
	tarCmd.Stderr = &tarErr
	if err := tarCmd.Start(); err != nil {
		t.Fatalf("tar the rootfs: %v", err)
	}
	res, err := docker.ImageImport(bctx, client.ImageImportSource{Source: stream, SourceName: "-"}, image, client.ImageImportOptions{
		Changes: []string{
			`LABEL ai.backend.kernelspec="1" ai.backend.runtime-type="` + PythonRuntimeType + `" ai.backend.runtime-path="` + PythonRuntimePath + `" ai.backend.base-distro="debian-` + suite + `"`,
			`ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8`,
		},
		Message: "baiagent test image: debootstrap " + suite + " minbase + python3-minimal",
	})
	if err != nil {
		_ = tarCmd.Process.Kill()
		_ = tarCmd.Wait()
		t.Fatalf("import %s: %v", image, err)
	}
	importErr := readImportStream(res)
	_ = res.Close()
	if err := tarCmd.Wait(); err != nil {
		t.Fatalf("tar the rootfs: %v\n%s", err, tarErr.String())
	}
	if importErr != nil {
		t.Fatalf("import %s: %v", image, importErr)
	}
	if _, err := docker.ImageInspect(ctx, image); err != nil {
		t.Fatalf("image %s missing after import: %v", image, err)
	}
	return image
}

// readImportStream drains the engine's JSON progress and returns the error
// it reports, if any.
func readImportStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func findDebootstrap(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("debootstrap")
	if err != nil {
		for _, p := range []string{"/usr/sbin/debootstrap", "/sbin/debootstrap"} {
			if _, serr := os.Stat(p); serr == nil {
				path, err = p, nil
				break
			}
		}
	}
	msg := ""
	switch {
	case err != nil:
		msg = "debootstrap is needed to build the python test image (apt-get install debootstrap)"
	case os.Geteuid() != 0:
		msg = "debootstrap needs root to build the python test image"
	}
	if msg != "" {
		testutil.Need(t, msg)
	}
	return path
}

// DebianMirror is the host's own Debian mirror and release suite, read
// from its apt sources (one-line /etc/apt/sources.list* and deb822
// .sources files), so that the image comes from wherever this machine
// gets its packages. Without one it is deb.debian.org and bookworm.
func DebianMirror() (mirror, suite string) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(append([]string{"/etc/apt/sources.list"}, lists...), files...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m, s, ok := debianEntry(string(data), strings.HasSuffix(f, ".sources")); ok {
			return m, s
		}
	}
	return "http://deb.debian.org/debian", "bookworm"
}

// debianEntry finds the first "deb" entry of the Debian archive itself (a
// URI ending in /debian, not -security) and its release suite (one without
// a -updates/-security/-backports part).
func debianEntry(text string, deb822 bool) (mirror, suite string, ok bool) {
	pick := func(types []string, uris []string, suites []string) (string, string, bool) {
		if !slices.Contains(types, "deb") {
			return "", "", false
		}
		for _, u := range uris {
			if !strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
				continue
			}
			for _, s := range suites {
				if s != "" && !strings.Contains(s, "-") && !strings.Contains(s, "/") {
					return u, s, true
				}
			}
		}
		return "", "", false
	}
	if deb822 {
		for _, stanza := range strings.Split(text, "\n\n") {
			fields := map[string][]string{}
			sc := bufio.NewScanner(strings.NewReader(stanza))
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				k, v, found := strings.Cut(line, ":")
				if found && !strings.HasPrefix(line, " ") {
					fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
				}
			}
			if enabled := fields["enabled"]; len(enabled) == 1 && enabled[0] == "no" {
				continue
			}
			if m, s, ok := pick(fields["types"], fields["uris"], fields["suites"]); ok {
				return m, s, true
			}
		}
		return "", "", false
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// deb [options] URI SUITE COMPONENT...
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		rest := f[1:]
		if strings.HasPrefix(rest[0], "[") {
			for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest = rest[1:]
			}
		}
		if len(rest) < 2 {
			continue
		}
		if m, s, ok := pick([]string{"deb"}, rest[:1], rest[1:2]); ok {
			return m, s, true
		}
	}
	return "", "", false
}
