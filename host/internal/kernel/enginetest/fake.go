// Package enginetest holds an in-memory kernel.Engine for tests that are
// about the kernel manager's validation and state rather than Docker, and
// the contract both it and the Docker engine pass (Contract), so that the
// fake stays faithful to what the manager relies on.
package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// Exit codes of the fake's processes, as a shell's under Docker: SIGTERM
// from a stop ends them with 128+15, SIGKILL (a forced remove, an OOM kill)
// with 128+9.
const (
	ExitCodeStopped = 143
	ExitCodeKilled  = 137
)

// ExecFunc answers an exec in place of the process the fake does not run.
type ExecFunc func(containerID, user string, cmd []string) kernel.ExecResult

// Exec is one exec the fake was asked to run.
type Exec struct {
	ContainerID string
	User        string
	Cmd         []string
}

// Fake is an in-memory kernel.Engine. It keeps images, containers and
// networks, and enforces the rules of Docker the manager relies on: names
// are unique, images and bind sources must exist, only running containers
// exec, and a running container that ends emits die (and oom) events with
// its labels. It runs no processes: a started container runs until it is
// stopped, removed, or a test ends it (Exit, OOMKill). Safe for concurrent
// use.
type Fake struct {
	mu         sync.Mutex
	images     map[string]*fakeImage // by id
	tags       map[string]string     // reference -> image id
	containers map[string]*fakeContainer
	names      map[string]string // name -> container id
	networks   map[string]*network.Inspect
	subs       map[*subscriber]struct{}
	execs      []Exec
	onExec     ExecFunc
}

type fakeImage struct {
	insp image.InspectResponse
}

type fakeContainer struct {
	insp container.InspectResponse
	log  []string
}

// NewFake makes an engine with Docker's predefined networks and no images.
func NewFake() *Fake {
	f := &Fake{
		images: map[string]*fakeImage{}, tags: map[string]string{},
		containers: map[string]*fakeContainer{}, names: map[string]string{},
		networks: map[string]*network.Inspect{}, subs: map[*subscriber]struct{}{},
	}
	for name, driver := range map[string]string{"bridge": "bridge", "host": "host", "none": "null"} {
		n := &network.Inspect{Containers: map[string]network.EndpointResource{}}
		n.Name, n.ID, n.Driver, n.Scope = name, newID(), driver, "local"
		f.networks[n.ID] = n
	}
	return f
}

// fakeErr is an error of one of Docker's classes (errdefs), with Docker's
// message.
type fakeErr struct {
	msg   string
	class error
}

func (e fakeErr) Error() string { return e.msg }
func (e fakeErr) Unwrap() error { return e.class }

func errOf(class error, format string, args ...any) error {
	return fakeErr{msg: fmt.Sprintf(format, args...), class: class}
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AddImage adds a local image under ref (":latest" when ref has no tag)
// with the given config, and returns its id.
func (f *Fake) AddImage(ref string, cfg dockerspec.DockerOCIImageConfig, architecture string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "sha256:" + newID()
	f.images[id] = &fakeImage{insp: image.InspectResponse{ID: id, Config: &cfg, Architecture: architecture, Os: "linux"}}
	f.tagLocked(normalizeRef(ref), id)
	return id
}

func (f *Fake) tagLocked(ref, id string) {
	if old, ok := f.tags[ref]; ok {
		if img := f.images[old]; img != nil {
			img.insp.RepoTags = slices.DeleteFunc(img.insp.RepoTags, func(t string) bool { return t == ref })
		}
	}
	f.tags[ref] = id
	f.images[id].insp.RepoTags = append(f.images[id].insp.RepoTags, ref)
}

// normalizeRef adds Docker's default tag to a reference without one.
func normalizeRef(ref string) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndex(ref, ":"); i < 0 || strings.Contains(ref[i:], "/") {
		return ref + ":latest"
	}
	return ref
}

func (f *Fake) imageLocked(ref string) (*fakeImage, error) {
	if id, ok := f.tags[normalizeRef(ref)]; ok {
		return f.images[id], nil
	}
	for _, id := range []string{ref, "sha256:" + ref} {
		if img, ok := f.images[id]; ok {
			return img, nil
		}
	}
	return nil, errOf(cerrdefs.ErrNotFound, "No such image: %s", ref)
}

// ImageInspect implements kernel.Engine.
func (f *Fake) ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.imageLocked(ref)
	if err != nil {
		return image.InspectResponse{}, err
	}
	return cloneJSON(img.insp), nil
}

// ImageSave implements kernel.Engine: a tar with the image's config and a
// manifest naming it, as `docker save` writes them (no layers: the fake
// has no file systems).
func (f *Fake) ImageSave(ctx context.Context, imageID string) (io.ReadCloser, error) {
	f.mu.Lock()
	img, err := f.imageLocked(imageID)
	var insp image.InspectResponse
	if err == nil {
		insp = cloneJSON(img.insp)
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	config, err := json.Marshal(insp.Config)
	if err != nil {
		return nil, err
	}
	configName := strings.TrimPrefix(insp.ID, "sha256:") + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": insp.RepoTags, "Layers": []string{}}})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, file := range []struct {
		name string
		body []byte
	}{{configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o644, Size: int64(len(file.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(file.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}

// ImageRemove implements kernel.Engine: a tag of an image with other tags
// is untagged; the image's last reference removes it, unless a container
// uses it.
func (f *Fake) ImageRemove(ctx context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.imageLocked(ref)
	if err != nil {
		return err
	}
	tag := normalizeRef(ref)
	if _, tagged := f.tags[tag]; tagged && len(img.insp.RepoTags) > 1 {
		delete(f.tags, tag)
		img.insp.RepoTags = slices.DeleteFunc(img.insp.RepoTags, func(t string) bool { return t == tag })
		return nil
	}
	for _, c := range f.containers {
		if c.insp.Image == img.insp.ID {
			return errOf(cerrdefs.ErrConflict, "conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
				ref, c.insp.ID[:12], img.insp.ID)
		}
	}
	for _, t := range img.insp.RepoTags {
		delete(f.tags, t)
	}
	delete(f.images, img.insp.ID)
	return nil
}

// validName is Docker's rule for container names.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ContainerCreate implements kernel.Engine.
func (f *Fake) ContainerCreate(ctx context.Context, spec kernel.ContainerSpec) (string, error) {
	if spec.Config == nil {
		return "", errOf(cerrdefs.ErrInvalidArgument, "config cannot be empty in order to create a container")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := strings.TrimPrefix(spec.Name, "/")
	if spec.Name != "" && !validName.MatchString(spec.Name) {
		return "", errOf(cerrdefs.ErrInvalidArgument, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", spec.Name)
	}
	if id, taken := f.names[name]; taken && name != "" {
		return "", errOf(cerrdefs.ErrConflict, "Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+name, id)
	}
	img, err := f.imageLocked(spec.Config.Image)
	if err != nil {
		return "", err
	}
	host := container.HostConfig{}
	if spec.HostConfig != nil {
		host = cloneJSON(*spec.HostConfig)
	}
	for _, m := range host.Mounts {
		if m.Type != mount.TypeBind {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			return "", errOf(cerrdefs.ErrInvalidArgument, "invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
		}
	}
	// As Docker: no mode is the default bridge.
	networks := []string{"bridge"}
	if mode := string(host.NetworkMode); mode != "" && mode != "default" {
		networks = nil
		if !strings.HasPrefix(mode, "container:") {
			networks = append(networks, mode)
		}
	}
	if spec.Networking != nil {
		for n := range spec.Networking.EndpointsConfig {
			if !slices.Contains(networks, n) {
				networks = append(networks, n)
			}
		}
	}
	// As Docker, networks are looked up at start, not here.
	cfg := cloneJSON(*spec.Config)
	// As Docker: the image's labels, then the container's own.
	labels := map[string]string{}
	if img.insp.Config != nil {
		maps.Copy(labels, img.insp.Config.Labels)
		if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
			cfg.Cmd = slices.Clone(img.insp.Config.Cmd)
		}
	}
	maps.Copy(labels, cfg.Labels)
	cfg.Labels = labels
	id := newID()
	if name == "" {
		name = "fake_" + id[:8]
	}
	c := &fakeContainer{insp: container.InspectResponse{
		ID: id, Name: "/" + name, Created: time.Now().UTC().Format(time.RFC3339Nano), Image: img.insp.ID,
		State:  &container.State{Status: container.StateCreated},
		Config: &cfg, HostConfig: &host,
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}},
	}}
	for _, n := range networks {
		c.insp.NetworkSettings.Networks[n] = &network.EndpointSettings{}
	}
	f.containers[id] = c
	f.names[name] = id
	return id, nil
}

// containerLocked finds a container by id, unique id prefix or name.
func (f *Fake) containerLocked(ref string) (*fakeContainer, error) {
	if c, ok := f.containers[ref]; ok {
		return c, nil
	}
	if id, ok := f.names[strings.TrimPrefix(ref, "/")]; ok {
		return f.containers[id], nil
	}
	var found *fakeContainer
	for id, c := range f.containers {
		if ref != "" && strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errOf(cerrdefs.ErrInvalidArgument, "multiple IDs found with provided prefix: %s", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, errOf(cerrdefs.ErrNotFound, "No such container: %s", ref)
	}
	return found, nil
}

// ContainerStart implements kernel.Engine.
func (f *Fake) ContainerStart(ctx context.Context, containerID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	if c.insp.State.Running {
		return nil
	}
	var joined []*network.Inspect
	for name := range c.insp.NetworkSettings.Networks {
		n, err := f.networkLocked(name)
		if err != nil {
			return err
		}
		joined = append(joined, n)
	}
	for _, n := range joined {
		n.Containers[c.insp.ID] = network.EndpointResource{Name: strings.TrimPrefix(c.insp.Name, "/")}
	}
	c.insp.State = &container.State{
		Status: container.StateRunning, Running: true, Pid: 1000 + len(f.containers),
		StartedAt: time.Now().UTC().Format(time.RFC3339Nano), FinishedAt: "0001-01-01T00:00:00Z",
	}
	return nil
}

// ContainerStop implements kernel.Engine: the fake's processes end at the
// SIGTERM.
func (f *Fake) ContainerStop(ctx context.Context, containerID string, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	f.exitLocked(c, ExitCodeStopped, false)
	return nil
}

// ContainerRemove implements kernel.Engine.
func (f *Fake) ContainerRemove(ctx context.Context, containerID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	f.exitLocked(c, ExitCodeKilled, false)
	delete(f.names, strings.TrimPrefix(c.insp.Name, "/"))
	delete(f.containers, c.insp.ID)
	return nil
}

// ContainerInspect implements kernel.Engine.
func (f *Fake) ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return container.InspectResponse{}, err
	}
	return cloneJSON(c.insp), nil
}

// hasLabel matches a "key" or "key=value" label filter.
func hasLabel(labels map[string]string, filter string) bool {
	key, value, withValue := strings.Cut(filter, "=")
	got, ok := labels[key]
	return ok && (!withValue || got == value)
}

// ContainerList implements kernel.Engine.
func (f *Fake) ContainerList(ctx context.Context, label string) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []container.Summary
	for _, c := range f.containers {
		if !hasLabel(c.insp.Config.Labels, label) {
			continue
		}
		out = append(out, container.Summary{
			ID: c.insp.ID, Names: []string{c.insp.Name}, Image: c.insp.Config.Image, ImageID: c.insp.Image,
			Labels: maps.Clone(c.insp.Config.Labels), State: c.insp.State.Status, Status: string(c.insp.State.Status),
		})
	}
	slices.SortFunc(out, func(a, b container.Summary) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// ContainerLogs implements kernel.Engine over what Log appended.
func (f *Fake) ContainerLogs(ctx context.Context, containerID string, tail int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return "", err
	}
	lines := c.log
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return strings.Join(lines, ""), nil
}

// ContainerExec implements kernel.Engine: the exec is recorded and
// answered by the function HandleExec set (exit 0, no output, without
// one).
func (f *Fake) ContainerExec(ctx context.Context, containerID, user string, cmd []string) (kernel.ExecResult, error) {
	f.mu.Lock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		f.mu.Unlock()
		return kernel.ExecResult{}, err
	}
	if !c.insp.State.Running {
		f.mu.Unlock()
		return kernel.ExecResult{}, errOf(cerrdefs.ErrConflict, "container %s is not running", c.insp.ID)
	}
	f.execs = append(f.execs, Exec{ContainerID: c.insp.ID, User: user, Cmd: slices.Clone(cmd)})
	handle, id := f.onExec, c.insp.ID
	f.mu.Unlock()
	if handle == nil {
		return kernel.ExecResult{}, nil
	}
	return handle(id, user, cmd), nil
}

// ContainerCommit implements kernel.Engine: the new image has the
// container's config with the LABEL changes applied; other changes are
// refused rather than ignored.
func (f *Fake) ContainerCommit(ctx context.Context, containerID string, opts kernel.CommitOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return "", err
	}
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Labels = maps.Clone(c.insp.Config.Labels)
	cfg.Env = slices.Clone(c.insp.Config.Env)
	cfg.Cmd = slices.Clone(c.insp.Config.Cmd)
	cfg.Entrypoint = slices.Clone(c.insp.Config.Entrypoint)
	cfg.WorkingDir = c.insp.Config.WorkingDir
	cfg.User = c.insp.Config.User
	for _, change := range opts.Changes {
		key, value, err := parseLabelChange(change)
		if err != nil {
			return "", err
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[key] = value
	}
	arch := ""
	if base, ok := f.images[c.insp.Image]; ok {
		arch = base.insp.Architecture
	}
	id := "sha256:" + newID()
	f.images[id] = &fakeImage{insp: image.InspectResponse{ID: id, Config: &cfg, Architecture: arch, Os: "linux", Comment: opts.Comment}}
	if opts.Reference != "" {
		f.tagLocked(normalizeRef(opts.Reference), id)
	}
	return id, nil
}

// parseLabelChange reads `LABEL "key"="value"` (or unquoted words).
func parseLabelChange(change string) (string, string, error) {
	rest, ok := strings.CutPrefix(change, "LABEL ")
	if !ok {
		return "", "", errOf(cerrdefs.ErrInvalidArgument, "the fake engine commits LABEL changes only, not %q", change)
	}
	word := func(s string) (string, string, error) {
		if strings.HasPrefix(s, `"`) {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return "", "", errOf(cerrdefs.ErrInvalidArgument, "unterminated quote in %q", change)
			}
			v, err := strconv.Unquote(s[:end+1])
			return v, s[end+1:], err
		}
		i := strings.IndexAny(s, "= ")
		if i < 0 {
			return s, "", nil
		}
		return s[:i], s[i:], nil
	}
	key, rest, err := word(strings.TrimSpace(rest))
	if err != nil {
		return "", "", err
	}
	rest, ok = strings.CutPrefix(rest, "=")
	if !ok {
		return "", "", errOf(cerrdefs.ErrInvalidArgument, "LABEL change without '=': %q", change)
	}
	value, _, err := word(rest)
	return key, value, err
}

// ContainerEvents implements kernel.Engine. Events are queued without
// bound, as Docker buffers them for a slow reader; the goroutine that
// delivers them ends with ctx.
func (f *Fake) ContainerEvents(ctx context.Context, label string) (<-chan events.Message, <-chan error) {
	s := &subscriber{label: label, wake: make(chan struct{}, 1)}
	msgs, errs := make(chan events.Message), make(chan error, 1)
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go func() {
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
			errs <- ctx.Err()
		}()
		for {
			f.mu.Lock()
			queue := s.queue
			s.queue = nil
			f.mu.Unlock()
			for _, msg := range queue {
				select {
				case msgs <- msg:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return msgs, errs
}

type subscriber struct {
	label string
	queue []events.Message // guarded by Fake.mu
	wake  chan struct{}
}

func (f *Fake) emitLocked(c *fakeContainer, action events.Action, extra map[string]string) {
	attrs := maps.Clone(c.insp.Config.Labels)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["image"] = c.insp.Config.Image
	attrs["name"] = strings.TrimPrefix(c.insp.Name, "/")
	maps.Copy(attrs, extra)
	now := time.Now()
	msg := events.Message{
		Type: events.ContainerEventType, Action: action, Scope: "local",
		Actor: events.Actor{ID: c.insp.ID, Attributes: attrs}, Time: now.Unix(), TimeNano: now.UnixNano(),
	}
	for s := range f.subs {
		if hasLabel(attrs, s.label) {
			s.queue = append(s.queue, msg)
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// exitLocked ends a running container's process.
func (f *Fake) exitLocked(c *fakeContainer, code int, oom bool) {
	if !c.insp.State.Running {
		return
	}
	if oom {
		f.emitLocked(c, events.ActionOOM, nil)
	}
	for _, n := range f.networks {
		delete(n.Containers, c.insp.ID)
	}
	c.insp.State = &container.State{
		Status: container.StateExited, ExitCode: code, OOMKilled: oom,
		StartedAt: c.insp.State.StartedAt, FinishedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	f.emitLocked(c, events.ActionDie, map[string]string{"exitCode": strconv.Itoa(code)})
}

func (f *Fake) networkLocked(ref string) (*network.Inspect, error) {
	if n, ok := f.networks[ref]; ok {
		return n, nil
	}
	for _, n := range f.networks {
		if n.Name == ref {
			return n, nil
		}
	}
	return nil, errOf(cerrdefs.ErrNotFound, "network %s not found", ref)
}

// NetworkInspect implements kernel.Engine.
func (f *Fake) NetworkInspect(ctx context.Context, name string) (network.Inspect, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.networkLocked(name)
	if err != nil {
		return network.Inspect{}, err
	}
	return cloneJSON(*n), nil
}

// NetworkCreate implements kernel.Engine.
func (f *Fake) NetworkCreate(ctx context.Context, name string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.networkLocked(name); err == nil {
		return errOf(cerrdefs.ErrConflict, "network with name %s already exists", name)
	}
	n := &network.Inspect{Containers: map[string]network.EndpointResource{}}
	n.Name, n.ID, n.Driver, n.Scope, n.Labels = name, newID(), "bridge", "local", maps.Clone(labels)
	f.networks[n.ID] = n
	return nil
}

// NetworkRemove implements kernel.Engine: Docker's predefined networks
// and networks with containers on them stay.
func (f *Fake) NetworkRemove(ctx context.Context, idOrName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.networkLocked(idOrName)
	if err != nil {
		return err
	}
	switch {
	case n.Name == "bridge" || n.Name == "host" || n.Name == "none":
		return errOf(cerrdefs.ErrPermissionDenied, "%s is a pre-defined network and cannot be removed", n.Name)
	case len(n.Containers) > 0:
		return errOf(cerrdefs.ErrPermissionDenied, "error while removing network: network %s id %s has active endpoints", n.Name, n.ID)
	}
	delete(f.networks, n.ID)
	return nil
}

// NetworkConnect implements kernel.Engine. As Docker, a container that
// does not run is only configured: its networks are looked up at start.
func (f *Fake) NetworkConnect(ctx context.Context, networkName, containerID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	n, err := f.networkLocked(networkName)
	if err != nil && c.insp.State.Running {
		return err
	}
	name := networkName
	if n != nil {
		name = n.Name
	}
	if _, ok := c.insp.NetworkSettings.Networks[name]; ok {
		return errOf(cerrdefs.ErrPermissionDenied, "endpoint with name %s already exists in network %s", strings.TrimPrefix(c.insp.Name, "/"), name)
	}
	c.insp.NetworkSettings.Networks[name] = &network.EndpointSettings{}
	if c.insp.State.Running {
		n.Containers[c.insp.ID] = network.EndpointResource{Name: strings.TrimPrefix(c.insp.Name, "/")}
	}
	return nil
}

// Exit ends a running container's process with code, as if it exited by
// itself; a container that is not running is left as it is.
func (f *Fake) Exit(containerID string, code int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	f.exitLocked(c, code, false)
	return nil
}

// OOMKill ends a running container as its cgroup's OOM killer does: an oom
// event, then die with SIGKILL's code, and OOMKilled in its state.
func (f *Fake) OOMKill(containerID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	f.exitLocked(c, ExitCodeKilled, true)
	return nil
}

// Log appends output to a container's log, as its process would write it.
func (f *Fake) Log(containerID, output string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.containerLocked(containerID)
	if err != nil {
		return err
	}
	for line := range strings.Lines(output) {
		c.log = append(c.log, line)
	}
	return nil
}

// HandleExec sets the function that answers execs.
func (f *Fake) HandleExec(fn ExecFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onExec = fn
}

// Execs returns the execs the fake ran, in order.
func (f *Fake) Execs() []Exec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.execs)
}

// cloneJSON deep-copies an API value, so that callers never share the
// fake's state.
func cloneJSON[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("enginetest: copy %T: %v", v, err))
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("enginetest: copy %T: %v", v, err))
	}
	return out
}

var _ kernel.Engine = (*Fake)(nil)
