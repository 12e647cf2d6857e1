package images

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moby/moby/client"
)

// Errors of a push a caller tells apart with errors.Is; a refused login is
// ErrUnauthorized as for pulls.
var (
	// ErrPushFailed: every push error (PushError) is one.
	ErrPushFailed = errors.New("image push failed")
	// ErrPushTimeout: the push ran past the push timeout.
	ErrPushTimeout = errors.New("image push timed out")
)

// PushError is a failed push, naming the image and the registry.
type PushError struct {
	Image    string
	Registry string
	// Kind is ErrUnauthorized, ErrPushTimeout or ErrPushFailed.
	Kind    error
	Timeout time.Duration
	Err     error
}

func (e *PushError) Error() string {
	switch e.Kind {
	case ErrUnauthorized:
		return fmt.Sprintf("push %s to registry %s: authentication failed (check the registry's username and password): %v", e.Image, e.Registry, e.Err)
	case ErrPushTimeout:
		return fmt.Sprintf("push %s to registry %s: timed out after %s (api.push-timeout): %v", e.Image, e.Registry, e.Timeout, e.Err)
	}
	return fmt.Sprintf("push %s to registry %s: %v", e.Image, e.Registry, e.Err)
}

func (e *PushError) Unwrap() error { return e.Err }

// Is makes every PushError an ErrPushFailed, and also its Kind.
func (e *PushError) Is(target error) bool { return target == ErrPushFailed || target == e.Kind }

// Push pushes the local image img.Ref to its registry with img.Registry's
// credentials, as upstream's DockerAgent.push_image: credentials only when
// both are set, and a push bounded by Options.PushTimeout (zero: no
// limit) as well as by ctx. Errors the registry reports in the progress
// stream fail the push as upstream's check of the last message does.
func (s *Service) Push(ctx context.Context, img Image) error {
	host := registryHost(img.Ref)
	log := s.opts.Logger.With().Str("image", img.Ref).Str("registry", host).Logger()
	fail := func(kind, err error) error {
		return &PushError{Image: img.Ref, Registry: host, Kind: kind, Timeout: s.opts.PushTimeout, Err: err}
	}
	auth, err := registryAuth(img)
	if err != nil {
		return fail(ErrPushFailed, err)
	}
	if s.opts.PushTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.PushTimeout)
		defer cancel()
	}
	started := time.Now()
	log.Info().Bool("credentials", auth != "").Msg("pushing image")
	resp, err := s.docker.ImagePush(ctx, img.Ref, client.ImagePushOptions{RegistryAuth: auth})
	if err == nil {
		err = resp.Wait(ctx)
	}
	if err != nil {
		kind := classify(ctx, err)
		switch kind {
		case ErrPullTimeout:
			kind = ErrPushTimeout
		case ErrPullFailed:
			kind = ErrPushFailed
		}
		log.Warn().Err(err).Msg("image push failed")
		return fail(kind, err)
	}
	log.Info().Dur("took", time.Since(started)).Msg("image pushed")
	return nil
}
