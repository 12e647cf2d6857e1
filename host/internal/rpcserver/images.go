package rpcserver

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/baiagent/baiagent/host/internal/events"
	"github.com/baiagent/baiagent/host/internal/images/imageref"

	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// Emitter sends agent events; *events.Bus implements it.
type Emitter interface {
	Emit(ctx context.Context, ev events.Event) error
}

// ImageMethodsOptions configure the image RPC methods.
type ImageMethodsOptions struct {
	// AgentID is the agent_id of the image_pull_* events.
	AgentID string
	// Events receives the image_pull_* and bgtask_* events; nil drops them.
	Events Emitter
	// Now stamps the events; nil means time.Now.
	Now    func() time.Time
	Logger zerolog.Logger
}

// ImageService is what the image methods need; *session.Images
// implements it over the Docker-backed image service.
type ImageService interface {
	NeedsPull(ctx context.Context, canonical string, img sessionapi.ImageConfig, policy string) (bool, error)
	Pull(ctx context.Context, canonical string, img sessionapi.ImageConfig) error
	Push(ctx context.Context, canonical string, reg sessionapi.ImageRegistry) error
	Remove(ctx context.Context, ref string, force, noprune bool) error
}

// ImageMethods serves check_and_pull, push_image and purge_images over an
// image service; check_pulling is the Server's (Deps.Kernels.IsPulling,
// which sees the same service).
type ImageMethods struct {
	images ImageService
	opts   ImageMethodsOptions
	tasks  *backgroundTasks // the pulls of check_and_pull
}

// NewImageMethods wraps an image service.
func NewImageMethods(svc ImageService, opts ImageMethodsOptions) *ImageMethods {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &ImageMethods{images: svc, opts: opts, tasks: newBackgroundTasks(opts.Events, opts.Logger)}
}

// RegisterImageMethods registers check_and_pull, push_image and
// purge_images on s.
func RegisterImageMethods(s *Server, im *ImageMethods) {
	s.Register("check_and_pull", im.checkAndPull)
	s.Register("push_image", im.pushImage)
	s.Register("purge_images", im.purgeImages)
}

// Wait waits for the background pull tasks.
func (im *ImageMethods) Wait() { im.tasks.Wait() }

// Close cancels the background pull tasks and waits for them.
func (im *ImageMethods) Close() { im.tasks.Close() }

func (im *ImageMethods) emit(ctx context.Context, ev events.Event) { im.tasks.emit(ctx, ev) }

func (im *ImageMethods) timestamp() float64 {
	return float64(im.opts.Now().UnixNano()) / float64(time.Second)
}

type pullRequest struct {
	key    string // the image_configs key, echoed in the answer
	image  sessionapi.ImageConfig
	policy string // auto_pull
}

// checkAndPull(image_configs: {canonical: ImageConfig}) -> {canonical:
// bgtask id hex}. Each image is checked and, per its auto_pull, pulled in a
// background task that emits bgtask_updated, image_pull_started,
// image_pull_finished or image_pull_failed, then bgtask_done or
// bgtask_failed, as upstream's AbstractAgent.check_and_pull.
func (im *ImageMethods) checkAndPull(ctx context.Context, call *Call) (any, error) {
	const method = "check_and_pull"
	args, err := call.bind(param{name: "image_configs"})
	if err != nil {
		return nil, err
	}
	configs, ok := args[0].(wiremsg.Map)
	if !ok {
		return nil, mustBe(argPath(method, "image_configs"), "dict", args[0])
	}
	requests := make([]pullRequest, 0, len(configs))
	for k, v := range configs {
		key, ok := k.(string)
		if !ok {
			return nil, typeError("%s(): argument 'image_configs' keys must be str, not %s", method, wiremsg.PyTypeName(k))
		}
		img, err := decodeImageConfig(argPath(method, "image_configs")+fmt.Sprintf("[%q]", key), v)
		if err != nil {
			return nil, err
		}
		if img.Canonical == "" {
			img.Canonical = key
		}
		policy := img.AutoPull
		if policy == "" {
			policy = sessionapi.AutoPullDigest
		}
		requests = append(requests, pullRequest{key: key, image: img, policy: policy})
	}
	sort.Slice(requests, func(i, j int) bool { return requests[i].key < requests[j].key })

	out := make(map[string]any, len(requests))
	for _, req := range requests {
		id, err := newTaskID()
		if err != nil {
			return nil, err
		}
		im.tasks.start(ctx, id, "check_and_pull task", func(ctx context.Context) error { return im.pullTask(ctx, req) })
		out[req.key] = hex.EncodeToString(id[:])
	}
	return out, nil
}

// pullTask is one check_and_pull task: its image_pull_* events; the
// bgtask_* ones are backgroundTasks'.
func (im *ImageMethods) pullTask(ctx context.Context, req pullRequest) error {
	canonical := req.image.Canonical
	ref := imageRefOf(req.image)
	need, err := im.images.NeedsPull(ctx, canonical, req.image, req.policy)
	if err != nil {
		// Upstream's check_image raises before any image event.
		return fmt.Errorf("%s: %w", canonical, err)
	}
	if !need {
		im.emit(ctx, events.ImagePullFinished{Image: canonical, AgentID: im.opts.AgentID, Timestamp: im.timestamp(), Msg: "Image already exists", ImageRef: ref})
		return nil
	}
	im.emit(ctx, events.ImagePullStarted{Image: canonical, AgentID: im.opts.AgentID, Timestamp: im.timestamp(), ImageRef: ref})
	if err := im.images.Pull(ctx, canonical, req.image); err != nil {
		im.emit(ctx, events.ImagePullFailed{Image: canonical, AgentID: im.opts.AgentID, Msg: err.Error(), ImageRef: ref})
		return err
	}
	im.emit(ctx, events.ImagePullFinished{Image: canonical, AgentID: im.opts.AgentID, Timestamp: im.timestamp(), ImageRef: ref})
	return nil
}

// pushImage(image_ref: ImageRef, registry_conf: ImageRegistry) ->
// {bgtask_id, canonical}: the push runs as a background task (bgtask_updated,
// then bgtask_done or bgtask_failed) with registry_conf's credentials and
// api.push-timeout, as upstream's AgentRPCServer.push_image. A local image
// (is_local) is not pushed: its task ends in bgtask_done at once, as
// upstream's DockerAgent.push_image returns early.
func (im *ImageMethods) pushImage(ctx context.Context, call *Call) (any, error) {
	const method = "push_image"
	args, err := call.bind(param{name: "image_ref"}, param{name: "registry_conf"})
	if err != nil {
		return nil, err
	}
	ref, ok := args[0].(wiremsg.ImageRef)
	if !ok {
		return nil, mustBe(argPath(method, "image_ref"), "ImageRef", args[0])
	}
	reg, err := decodeRegistryConf(argPath(method, "registry_conf"), args[1])
	if err != nil {
		return nil, err
	}
	id, err := newTaskID()
	if err != nil {
		return nil, err
	}
	canonical := ref.Canonical()
	im.tasks.start(ctx, id, "push_image of "+canonical, func(ctx context.Context) error {
		if ref.IsLocal {
			return nil
		}
		return im.images.Push(ctx, canonical, reg)
	})
	return map[string]any{"bgtask_id": id.String(), "canonical": canonical}, nil
}

// decodeRegistryConf reads an ImageRegistry dict: name, url, and the
// optional username and password.
func decodeRegistryConf(path string, v any) (sessionapi.ImageRegistry, error) {
	var reg sessionapi.ImageRegistry
	r, err := newFieldReader(path, v)
	if err != nil {
		return reg, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"name", &reg.Name}, {"url", &reg.URL}, {"username", &reg.Username}, {"password", &reg.Password}} {
		if *f.dst, err = r.str(f.key); err != nil {
			return reg, err
		}
	}
	return reg, nil
}

// purgeImages(image_canonicals, force, noprune) -> {responses: [{image,
// error}]}, one response per image in order; error is None or why the
// image was kept (unknown, used by a running kernel without force, ...).
func (im *ImageMethods) purgeImages(ctx context.Context, call *Call) (any, error) {
	const method = "purge_images"
	args, err := call.bind(param{name: "image_canonicals"}, param{name: "force"}, param{name: "noprune"})
	if err != nil {
		return nil, err
	}
	list, ok := args[0].([]any)
	if !ok {
		return nil, mustBe(argPath(method, "image_canonicals"), "a list", args[0])
	}
	refs := make([]string, len(list))
	for i, item := range list {
		if refs[i], err = strValue(argPath(method, fmt.Sprintf("image_canonicals[%d]", i)), item); err != nil {
			return nil, err
		}
	}
	var force, noprune bool
	for _, b := range []struct {
		name string
		v    any
		dst  *bool
	}{{"force", args[1], &force}, {"noprune", args[2], &noprune}} {
		v, ok := b.v.(bool)
		if !ok {
			return nil, mustBe(argPath(method, b.name), "bool", b.v)
		}
		*b.dst = v
	}
	// Concurrently, as upstream's TaskGroup; answers keep the request order.
	responses := make([]any, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errText any
			if err := im.images.Remove(ctx, ref, force, noprune); err != nil {
				errText = err.Error()
				im.opts.Logger.Warn().Err(err).Str("image", ref).Msg("purge_images: image kept")
			}
			responses[i] = map[string]any{"image": ref, "error": errText}
		}()
	}
	wg.Wait()
	return map[string]any{"responses": responses}, nil
}

// imageRefOf is the image_ref of the image_pull_* events; nil (left out,
// as upstream allows) when the canonical name does not parse.
func imageRefOf(img sessionapi.ImageConfig) *wiremsg.ImageRef {
	parts, err := imageref.Parse(img.Canonical, img.Project, img.Registry.Name)
	if err != nil {
		return nil
	}
	return &wiremsg.ImageRef{Registry: parts.Registry, Project: parts.Project, Name: parts.Name, Tag: parts.Tag,
		Architecture: img.Architecture, IsLocal: img.IsLocal}
}
