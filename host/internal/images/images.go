// Package images pulls and removes kernel images through the Docker engine
// the way upstream's Docker agent does: whether to pull follows the
// kernel's auto_pull behaviour (digest, tag or none), credentials come with
// each request (the manager sends them; the agent stores none), and one
// pull per image runs at a time while later requesters wait for it.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"
)

// Policy is upstream's AutoPullBehavior.
type Policy string

// The auto_pull behaviours.
const (
	// PolicyDigest pulls when the local image is missing or is not the one
	// the manager names by digest.
	PolicyDigest Policy = "digest"
	// PolicyTag pulls only when no image of that name is present.
	PolicyTag Policy = "tag"
	// PolicyNone never pulls; a missing image is an error.
	PolicyNone Policy = "none"
)

// DefaultPullTimeout is upstream's [api] pull-timeout.
const DefaultPullTimeout = 7200 * time.Second

// Registry is the registry part of an ImageConfig: where the image comes
// from and the credentials to pull it with.
type Registry struct {
	Name     string
	URL      string
	Username string
	Password string
}

// Image is what the manager says about one image.
type Image struct {
	// Ref is the canonical name Docker pulls and runs, e.g.
	// "cr.backend.ai/stable/python:3.11".
	Ref string
	// Digest is ImageConfig.digest: the image ID ("sha256:<config digest>")
	// the manager knows. Empty when unknown.
	Digest string
	// RepoDigest is ImageConfig.repo_digest: the manifest digest, bare
	// ("sha256:...") or as "name@sha256:...". Empty when unknown.
	RepoDigest string
	Registry   Registry
}

// Errors a caller tells apart with errors.Is.
var (
	// ErrNotAvailable: the image is missing and auto_pull is none.
	ErrNotAvailable = errors.New("image is not available locally")
	// ErrPullFailed: every pull error (PullError) is one.
	ErrPullFailed = errors.New("image pull failed")
	// ErrUnauthorized: the registry refused the credentials.
	ErrUnauthorized = errors.New("registry authentication failed")
	// ErrPullTimeout: the pull ran past the pull timeout.
	ErrPullTimeout = errors.New("image pull timed out")
	// ErrNotFound: no such local image (Remove).
	ErrNotFound = errors.New("no such image")
	// ErrInUse: a running kernel container uses the image (Remove without force).
	ErrInUse = errors.New("image is in use by a running kernel")
)

// PullError is a failed pull, naming the image and the registry.
type PullError struct {
	Image    string
	Registry string
	// Kind is ErrUnauthorized, ErrPullTimeout or ErrPullFailed.
	Kind    error
	Timeout time.Duration
	Err     error
}

func (e *PullError) Error() string {
	switch e.Kind {
	case ErrUnauthorized:
		return fmt.Sprintf("pull %s from registry %s: authentication failed (check the registry's username and password): %v", e.Image, e.Registry, e.Err)
	case ErrPullTimeout:
		return fmt.Sprintf("pull %s from registry %s: timed out after %s (api.pull-timeout): %v", e.Image, e.Registry, e.Timeout, e.Err)
	}
	return fmt.Sprintf("pull %s from registry %s: %v", e.Image, e.Registry, e.Err)
}

func (e *PullError) Unwrap() error { return e.Err }

// Is makes every PullError an ErrPullFailed, and also its Kind.
func (e *PullError) Is(target error) bool { return target == ErrPullFailed || target == e.Kind }

// Options tune a Service.
type Options struct {
	// PullTimeout bounds one pull (api.pull-timeout, DefaultPullTimeout
	// unless configured); zero means no limit, as upstream treats 0.
	PullTimeout time.Duration
	// PushTimeout bounds one push (api.push-timeout); zero means no limit,
	// upstream's default.
	PushTimeout time.Duration
	// KernelLabel marks kernel containers: Remove refuses an image a running
	// container with this label uses. Empty means every container counts.
	KernelLabel string
	Logger      zerolog.Logger
}

// Service pulls and removes images. Pulls outlive the request that
// started them (others may be waiting), so Close ends them.
type Service struct {
	docker *client.Client
	opts   Options

	ctx    context.Context // parent of every pull; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	pulls map[pullKey]*pull // the pulls in flight

	scanMu sync.Mutex
	known  map[string]Installed // the last Rescan's images by canonical name
	// inspected caches what a scan reads from docker image inspect, by
	// image ID: an ID names the content, so its labels and architecture
	// never change, and a rescan inspects only images new since the last.
	inspected map[string]inspectedImage
}

// pull is one in-flight pull; err is set before done is closed.
type pull struct {
	done chan struct{}
	err  error
}

// New returns a Service over a Docker client.
func New(docker *client.Client, opts Options) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{docker: docker, opts: opts, ctx: ctx, cancel: cancel, pulls: map[pullKey]*pull{}}
}

// Close cancels the pulls in flight and waits for them to end.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// normalize is the key of an image: Docker's fully qualified name with the
// implied ":latest", so "busybox" and "docker.io/library/busybox:latest"
// are one image. A name Docker cannot parse is kept as it is.
func normalize(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}

// registryHost is the registry Docker contacts for ref.
func registryHost(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "(unparsable reference)"
	}
	return reference.Domain(named)
}

// IsPulling says whether a pull of ref is in flight.
func (s *Service) IsPulling(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref = normalize(ref)
	for key := range s.pulls {
		if key.ref == ref {
			return true
		}
	}
	return false
}

// pullKey names a pull that others may join: the same image with the same
// credentials. A caller with other credentials pulls on its own (the
// engine shares the layers), so that good credentials never wait for, or
// fail with, wrong ones.
type pullKey struct {
	ref         string // normalized
	credentials [sha256.Size]byte
}

func keyOf(img Image) pullKey {
	return pullKey{ref: normalize(img.Ref),
		credentials: sha256.Sum256([]byte(img.Registry.Username + "\x00" + img.Registry.Password))}
}

// NeedsPull reports whether img must be pulled under policy, as upstream's
// check_image: digest pulls when the image is missing or differs from the
// manager's digest, tag when it is missing; none fails with
// ErrNotAvailable when it is missing. With digest and no digest given,
// presence is enough (there is nothing to compare).
func (s *Service) NeedsPull(ctx context.Context, img Image, policy Policy) (bool, error) {
	switch policy {
	case PolicyDigest, PolicyTag, PolicyNone:
	default:
		return false, fmt.Errorf("image %s: unknown auto_pull behaviour %q", img.Ref, policy)
	}
	insp, err := s.docker.ImageInspect(ctx, img.Ref)
	if cerrdefs.IsNotFound(err) {
		if policy == PolicyNone {
			return false, fmt.Errorf("%w: %s (auto_pull is none)", ErrNotAvailable, img.Ref)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", img.Ref, err)
	}
	if policy != PolicyDigest {
		return false, nil
	}
	return !matchesDigest(insp.ID, insp.RepoDigests, img), nil
}

// digestOf is the "sha256:..." part of a bare digest or a "name@digest".
func digestOf(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// matchesDigest says whether the local image (its ID and repo digests) is
// the one the manager names. Managers put the image ID in digest and the
// manifest digest in repo_digest, but either may hold either.
func matchesDigest(id string, repoDigests []string, img Image) bool {
	want := []string{}
	for _, d := range []string{img.Digest, img.RepoDigest} {
		if d = digestOf(strings.TrimSpace(d)); d != "" {
			want = append(want, d)
		}
	}
	if len(want) == 0 {
		return true
	}
	have := []string{id}
	for _, rd := range repoDigests {
		have = append(have, digestOf(rd))
	}
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// Ensure makes img present under policy: it pulls when NeedsPull says so,
// calling onPull (if not nil) first. It reports whether it pulled.
func (s *Service) Ensure(ctx context.Context, img Image, policy Policy, onPull func()) (bool, error) {
	need, err := s.NeedsPull(ctx, img, policy)
	if err != nil || !need {
		return false, err
	}
	if onPull != nil {
		onPull()
	}
	if err := s.Pull(ctx, img); err != nil {
		return false, err
	}
	return true, nil
}

// Pull pulls img with its registry's credentials. A pull of the same image
// with the same credentials already in flight is joined instead of started
// again. The pull itself is bounded by the pull timeout, not by ctx: ctx
// only bounds how long this caller waits.
func (s *Service) Pull(ctx context.Context, img Image) error {
	key := keyOf(img)
	s.mu.Lock()
	p, joined := s.pulls[key]
	if !joined {
		p = &pull{done: make(chan struct{})}
		s.pulls[key] = p
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			p.err = s.pullOnce(img)
			s.mu.Lock()
			delete(s.pulls, key)
			s.mu.Unlock()
			close(p.done)
		}()
	}
	s.mu.Unlock()
	if joined {
		s.opts.Logger.Debug().Str("image", img.Ref).Msg("joining the pull in flight")
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the pull of %s: %w", img.Ref, ctx.Err())
	}
}

// registryAuth is the X-Registry-Auth header value: base64url of the
// AuthConfig JSON. Upstream sends credentials only when both are set.
func registryAuth(img Image) (string, error) {
	if img.Registry.Username == "" || img.Registry.Password == "" {
		return "", nil
	}
	buf, err := json.Marshal(registry.AuthConfig{
		Username: img.Registry.Username, Password: img.Registry.Password, ServerAddress: registryHost(img.Ref),
	})
	if err != nil {
		return "", fmt.Errorf("encode registry credentials: %w", err)
	}
	return base64.URLEncoding.EncodeToString(buf), nil
}

func (s *Service) pullContext() (context.Context, context.CancelFunc) {
	if s.opts.PullTimeout > 0 {
		return context.WithTimeout(s.ctx, s.opts.PullTimeout)
	}
	return context.WithCancel(s.ctx)
}

func (s *Service) pullOnce(img Image) error {
	host := registryHost(img.Ref)
	log := s.opts.Logger.With().Str("image", img.Ref).Str("registry", host).Logger()
	fail := func(kind, err error) error {
		return &PullError{Image: img.Ref, Registry: host, Kind: kind, Timeout: s.opts.PullTimeout, Err: err}
	}
	auth, err := registryAuth(img)
	if err != nil {
		return fail(ErrPullFailed, err)
	}
	ctx, cancel := s.pullContext()
	defer cancel()
	started := time.Now()
	log.Info().Bool("credentials", auth != "").Msg("pulling image")
	resp, err := s.docker.ImagePull(ctx, img.Ref, client.ImagePullOptions{RegistryAuth: auth})
	if err == nil {
		// Registry errors arrive in the progress stream after a 200.
		err = resp.Wait(ctx)
	}
	if err != nil {
		kind := classify(ctx, err)
		log.Warn().Err(err).Msg("image pull failed")
		return fail(kind, err)
	}
	log.Info().Dur("took", time.Since(started)).Msg("image pulled")
	return nil
}

// classify names what went wrong with a pull. The engine reports a
// refused login as 401 or, through the progress stream, only in words.
func classify(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrPullTimeout
	}
	if cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) {
		return ErrUnauthorized
	}
	msg := strings.ToLower(err.Error())
	for _, hint := range []string{"unauthorized", "authentication required", "no basic auth credentials", "access denied", "incorrect username or password"} {
		if strings.Contains(msg, hint) {
			return ErrUnauthorized
		}
	}
	return ErrPullFailed
}

// RemoveOptions are purge_images' force and noprune.
type RemoveOptions struct {
	// Force removes the image even when a running kernel uses it (Docker
	// then only untags it) or it has several tags.
	Force bool
	// NoPrune keeps untagged parent images.
	NoPrune bool
}

// Remove deletes a local image as docker rmi does. An image a running
// kernel container uses is refused unless opts.Force.
func (s *Service) Remove(ctx context.Context, ref string, opts RemoveOptions) error {
	insp, err := s.docker.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if err != nil {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if !opts.Force {
		users, err := s.runningUsers(ctx, ref, insp.ID, len(insp.RepoTags) <= 1)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: %s is used by container %s (use force to remove it anyway)", ErrInUse, ref, strings.Join(users, ", "))
		}
	}
	if _, err := s.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: opts.Force, PruneChildren: !opts.NoPrune}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("%w: %s", ErrNotFound, ref)
		}
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	s.opts.Logger.Info().Str("image", ref).Bool("force", opts.Force).Bool("noprune", opts.NoPrune).Msg("image removed")
	return nil
}

// runningUsers lists the running kernel containers that removing ref
// would hurt: those created by that name, and, when ref is the image's
// last tag, every one running the image. Removing one of several tags
// only untags it, which a kernel started by another name never notices.
// (The ancestor filter also matches images built on top of the image, so
// the image ID is compared too.)
func (s *Service) runningUsers(ctx context.Context, ref, imageID string, lastTag bool) ([]string, error) {
	filters := client.Filters{}.Add("ancestor", imageID).Add("status", "running")
	if s.opts.KernelLabel != "" {
		filters.Add("label", s.opts.KernelLabel)
	}
	list, err := s.docker.ContainerList(ctx, client.ContainerListOptions{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list the containers using image %s: %w", imageID, err)
	}
	var names []string
	for _, c := range list.Items {
		if c.ImageID != imageID || (!lastTag && normalize(c.Image) != normalize(ref)) {
			continue
		}
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}
