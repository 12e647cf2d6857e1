package kernel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/baiagent/baiagent/host/internal/dockerlog"
)

// Engine is what the manager needs from a container engine: Docker
// (NewDockerEngine) in the agent, an in-memory fake (enginetest) in tests
// that are about the manager's own validation and state rather than
// Docker's. Errors keep Docker's classes (github.com/containerd/errdefs:
// IsNotFound, IsConflict, IsInvalidArgument), on which the manager branches.
type Engine interface {
	// ImageInspect describes a local image; not found when it is absent.
	ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error)
	// ImageSave streams the image as `docker save` writes it.
	ImageSave(ctx context.Context, imageID string) (io.ReadCloser, error)
	// ImageRemove untags or removes an image.
	ImageRemove(ctx context.Context, ref string) error

	// ContainerCreate creates a stopped container and returns its id.
	ContainerCreate(ctx context.Context, spec ContainerSpec) (string, error)
	// ContainerStart starts a created or stopped container; starting a
	// running one is no error.
	ContainerStart(ctx context.Context, containerID string) error
	// ContainerStop sends SIGTERM and, after timeout, SIGKILL; stopping a
	// stopped container is no error.
	ContainerStop(ctx context.Context, containerID string, timeout time.Duration) error
	// ContainerRemove kills the container if it runs and removes it with
	// its anonymous volumes.
	ContainerRemove(ctx context.Context, containerID string) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	// ContainerList lists containers, stopped ones too, carrying the label
	// "key=value".
	ContainerList(ctx context.Context, label string) ([]container.Summary, error)
	// ContainerLogs returns the last tail lines (0: all) of the container's
	// stdout and stderr, interleaved.
	ContainerLogs(ctx context.Context, containerID string, tail int) (string, error)
	// ContainerExec runs cmd as user in a running container and waits for
	// it; a container that is not running is a conflict.
	ContainerExec(ctx context.Context, containerID, user string, cmd []string) (ExecResult, error)
	// ContainerCommit makes an image of the container (tagged reference
	// unless empty) with Dockerfile changes applied, and returns its id.
	ContainerCommit(ctx context.Context, containerID string, opts CommitOptions) (string, error)
	// ContainerEvents streams the die and oom events of containers
	// carrying the label "key=value" until ctx ends or the stream breaks;
	// the error channel then says why.
	ContainerEvents(ctx context.Context, label string) (<-chan events.Message, <-chan error)

	NetworkInspect(ctx context.Context, name string) (network.Inspect, error)
	// NetworkCreate creates a bridge network; a name in use is a conflict.
	NetworkCreate(ctx context.Context, name string, labels map[string]string) error
	NetworkRemove(ctx context.Context, idOrName string) error
	// NetworkConnect attaches a container to a network.
	NetworkConnect(ctx context.Context, networkName, containerID string) error
}

// ContainerSpec is a container to create, in the Docker API's shape.
type ContainerSpec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
}

// ExecResult is how an exec ended.
type ExecResult struct {
	// Output is stdout and stderr, interleaved.
	Output   []byte
	ExitCode int
}

// CommitOptions are a commit's reference, Dockerfile changes and comment.
type CommitOptions struct {
	Reference string
	Changes   []string
	Comment   string
}

// execOutputLimit bounds what an exec's output may bring back.
const execOutputLimit = 64 << 10

// dockerEngine is Engine over the Docker engine API.
type dockerEngine struct {
	cli *client.Client
}

// NewDockerEngine is the Engine the agent runs on.
func NewDockerEngine(cli *client.Client) Engine { return dockerEngine{cli: cli} }

func (d dockerEngine) ImageInspect(ctx context.Context, ref string) (image.InspectResponse, error) {
	res, err := d.cli.ImageInspect(ctx, ref)
	return res.InspectResponse, err
}

func (d dockerEngine) ImageSave(ctx context.Context, imageID string) (io.ReadCloser, error) {
	return d.cli.ImageSave(ctx, []string{imageID})
}

func (d dockerEngine) ImageRemove(ctx context.Context, ref string) error {
	_, err := d.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{})
	return err
}

func (d dockerEngine) ContainerCreate(ctx context.Context, spec ContainerSpec) (string, error) {
	res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: spec.Config, HostConfig: spec.HostConfig, NetworkingConfig: spec.Networking, Name: spec.Name,
	})
	return res.ID, err
}

func (d dockerEngine) ContainerStart(ctx context.Context, containerID string) error {
	_, err := d.cli.ContainerStart(ctx, containerID, client.ContainerStartOptions{})
	return err
}

func (d dockerEngine) ContainerStop(ctx context.Context, containerID string, timeout time.Duration) error {
	seconds := int(timeout / time.Second)
	_, err := d.cli.ContainerStop(ctx, containerID, client.ContainerStopOptions{Timeout: &seconds})
	return err
}

func (d dockerEngine) ContainerRemove(ctx context.Context, containerID string) error {
	_, err := d.cli.ContainerRemove(ctx, containerID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	return err
}

func (d dockerEngine) ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error) {
	res, err := d.cli.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	return res.Container, err
}

func (d dockerEngine) ContainerList(ctx context.Context, label string) ([]container.Summary, error) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
	return res.Items, err
}

func (d dockerEngine) ContainerLogs(ctx context.Context, containerID string, tail int) (string, error) {
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}
	if tail > 0 {
		opts.Tail = strconv.Itoa(tail)
	}
	rc, err := d.cli.ContainerLogs(ctx, containerID, opts)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var out bytes.Buffer
	err = dockerlog.Copy(&out, rc)
	return out.String(), err
}

func (d dockerEngine) ContainerExec(ctx context.Context, containerID, user string, cmd []string) (ExecResult, error) {
	ex, err := d.cli.ExecCreate(ctx, containerID, client.ExecCreateOptions{
		User: user, Cmd: cmd, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return ExecResult{}, err
	}
	att, err := d.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return ExecResult{}, err
	}
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, io.LimitReader(att.Reader, execOutputLimit))
	att.Close()
	if err != nil {
		return ExecResult{Output: out.Bytes()}, fmt.Errorf("exec output: %w", err)
	}
	insp, err := d.cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return ExecResult{Output: out.Bytes()}, err
	}
	return ExecResult{Output: out.Bytes(), ExitCode: insp.ExitCode}, nil
}

func (d dockerEngine) ContainerCommit(ctx context.Context, containerID string, opts CommitOptions) (string, error) {
	res, err := d.cli.ContainerCommit(ctx, containerID, client.ContainerCommitOptions{
		Reference: opts.Reference, Changes: opts.Changes, Comment: opts.Comment,
	})
	return res.ID, err
}

func (d dockerEngine) ContainerEvents(ctx context.Context, label string) (<-chan events.Message, <-chan error) {
	filters := client.Filters{}.
		Add("type", string(events.ContainerEventType)).
		Add("event", string(events.ActionDie), string(events.ActionOOM)).
		Add("label", label)
	res := d.cli.Events(ctx, client.EventsListOptions{Filters: filters})
	return res.Messages, res.Err
}

func (d dockerEngine) NetworkInspect(ctx context.Context, name string) (network.Inspect, error) {
	res, err := d.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	return res.Network, err
}

func (d dockerEngine) NetworkCreate(ctx context.Context, name string, labels map[string]string) error {
	_, err := d.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
	return err
}

func (d dockerEngine) NetworkRemove(ctx context.Context, idOrName string) error {
	_, err := d.cli.NetworkRemove(ctx, idOrName, client.NetworkRemoveOptions{})
	return err
}

func (d dockerEngine) NetworkConnect(ctx context.Context, networkName, containerID string) error {
	_, err := d.cli.NetworkConnect(ctx, networkName, client.NetworkConnectOptions{Container: containerID})
	return err
}
