package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
	"github.com/baiagent/baiagent/host/internal/kernel/scratch"
)

// ImageLabelFeatures lists the image's kernel features; "uid-match" asks
// for the agent's kernel-uid/kernel-gid.
const ImageLabelFeatures = "ai.backend.features"

// kernelUser is who the kernel's processes run as (the runner sets the
// user up from LOCAL_USER_ID, LOCAL_GROUP_ID and ADDITIONAL_GIDS).
type kernelUser struct {
	uid, gid int
	// additional are ADDITIONAL_GIDS: the request's supplementary gids and
	// the plugins' groups.
	additional []int
}

// userOf is the kernel user of req: its uid and main_gid, else the
// agent's kernel-uid and kernel-gid; the supplementary gids, plus the
// agent's kernel-gid when main_gid overrides it on a uid-match image, as
// upstream's create_kernel (agent/agent.py).
func (m *Manager) userOf(req CreateRequest, labels map[string]string) kernelUser {
	u := kernelUser{uid: m.uid, gid: m.gid}
	if req.UID != nil {
		u.uid = *req.UID
	}
	add := func(g int) {
		if g >= 0 && !slices.Contains(u.additional, g) {
			u.additional = append(u.additional, g)
		}
	}
	for _, g := range req.SupplementaryGIDs {
		add(g)
	}
	if req.MainGID != nil {
		u.gid = *req.MainGID
		if slices.Contains(strings.Fields(labels[ImageLabelFeatures]), "uid-match") {
			add(m.gid)
		}
	}
	return u
}

// userEnv sets LOCAL_USER_ID, LOCAL_GROUP_ID and ADDITIONAL_GIDS, the
// last merged with what env and the plugins' groups already name, as
// upstream's update_additional_gids.
func userEnv(env map[string]string, u kernelUser, pluginGroups []string) {
	env["LOCAL_USER_ID"] = strconv.Itoa(u.uid)
	env["LOCAL_GROUP_ID"] = strconv.Itoa(u.gid)
	var gids []int
	add := func(s string) {
		if g, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && g >= 0 && !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	for s := range strings.SplitSeq(env["ADDITIONAL_GIDS"], ",") {
		add(s)
	}
	for _, s := range pluginGroups {
		add(s)
	}
	for _, g := range u.additional {
		add(strconv.Itoa(g))
	}
	if len(gids) == 0 {
		return
	}
	slices.Sort(gids)
	parts := make([]string, len(gids))
	for i, g := range gids {
		parts[i] = strconv.Itoa(g)
	}
	env["ADDITIONAL_GIDS"] = strings.Join(parts, ",")
}

// Dotfile is one of internal_data.dotfiles.
type Dotfile struct {
	Path string
	// Perm is the octal mode as the manager sends it ("644").
	Perm string
	Data string
}

// chownIfRoot gives paths to uid:gid when the agent can (upstream's
// _chown_paths_if_root).
func chownIfRoot(uid, gid int, paths ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, p := range paths {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return nil
}

// writeBootstrap writes the user's bootstrap script into work/ (a new
// kernel only: a restart keeps what the user may have changed).
func writeBootstrap(dirs scratch.Dirs, script string, u kernelUser) error {
	if script == "" {
		return nil
	}
	path := filepath.Join(dirs.Work, "bootstrap.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return fmt.Errorf("bootstrap script: %w", err)
	}
	return chownIfRoot(u.uid, u.gid, path)
}

// dotfilePath is where a dotfile lands on the host, as upstream's
// prepare_container: a relative path under work/, /home/<x>/... under the
// scratch dir (so /home/work/... in work/ and /home/config/... in
// config/); and the dir up to which its parents take its mode. Other
// absolute paths, which upstream writes on the agent's own host, and
// paths that leave the scratch dir are refused.
func dotfilePath(dirs scratch.Dirs, p string) (path, top string, err error) {
	var rel string
	switch {
	case strings.HasPrefix(p, "/home/"):
		rel = strings.TrimPrefix(p, "/home/")
	case strings.HasPrefix(p, "/"):
		return "", "", fmt.Errorf("dotfile %q: only paths under /home/ are written", p)
	default:
		rel = filepath.Join("work", p)
	}
	clean := filepath.Clean(rel)
	first, rest, _ := strings.Cut(clean, string(filepath.Separator))
	if !filepath.IsLocal(clean) || rest == "" {
		return "", "", fmt.Errorf("dotfile %q leaves the kernel's scratch dir", p)
	}
	// Upstream stops at the work dir; /home/<x>/... stops at <x> alike.
	return filepath.Join(dirs.Base, clean), filepath.Join(dirs.Base, first), nil
}

// writeDotfiles writes internal_data.dotfiles in order (a later one
// overwrites an earlier), each ending in a newline, chmod'ed with its perm
// together with every parent up to the work dir, and owned by the kernel
// user, as upstream's prepare_container (agent/docker/agent.py).
func writeDotfiles(dirs scratch.Dirs, files []Dotfile, u kernelUser) error {
	for _, f := range files {
		path, top, err := dotfilePath(dirs, f.Path)
		if err != nil {
			return err
		}
		perm, err := strconv.ParseUint(f.Perm, 8, 32)
		if err != nil || perm > 0o7777 {
			return fmt.Errorf("dotfile %q: perm %q is not an octal mode", f.Path, f.Perm)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("dotfile %q: %w", f.Path, err)
		}
		data := f.Data
		if !strings.HasSuffix(data, "\n") {
			data += "\n"
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return fmt.Errorf("dotfile %q: %w", f.Path, err)
		}
		// Upstream gives the file's mode to its parent dirs as well.
		for p := path; p != top && strings.HasPrefix(p, top+string(filepath.Separator)); p = filepath.Dir(p) {
			if err := os.Chmod(p, os.FileMode(perm)); err != nil {
				return fmt.Errorf("dotfile %q: %w", f.Path, err)
			}
			if err := chownIfRoot(u.uid, u.gid, p); err != nil {
				return fmt.Errorf("dotfile %q: %w", f.Path, err)
			}
		}
	}
	return nil
}

// DockerCredsFile is config/docker-creds.json, internal_data's
// docker_credentials for the kernel's own use.
const DockerCredsFile = "docker-creds.json"

func writeDockerCreds(dirs scratch.Dirs, creds []byte) error {
	if len(creds) == 0 {
		return nil
	}
	return atomicfile.Write(filepath.Join(dirs.Config, DockerCredsFile), creds, 0o644)
}

// sudoersCommand is what upstream runs as root in a sudo session's
// container.
const sudoersCommand = `mkdir -p /etc/sudoers.d && echo "work ALL=(ALL:ALL) NOPASSWD:ALL" > /etc/sudoers.d/01-bai-work`

// provisionSudo writes /etc/sudoers.d/01-bai-work as root in the started
// container; any output or a non-zero exit fails the creation, as
// upstream's ContainerCreationError("sudoers provision failed").
func (m *Manager) provisionSudo(ctx context.Context, containerID string) error {
	res, err := m.cfg.Engine.ContainerExec(ctx, containerID, "root", []string{"sh", "-c", sudoersCommand})
	if err != nil {
		return fmt.Errorf("sudoers provision failed: %w", err)
	}
	if res.ExitCode != 0 || len(res.Output) > 0 {
		return fmt.Errorf("sudoers provision failed (exit %d): %s", res.ExitCode, strings.TrimSpace(string(res.Output)))
	}
	return nil
}
