package session

import (
	"context"

	"github.com/baiagent/baiagent/host/internal/images"
	"github.com/baiagent/baiagent/host/internal/session/sessionapi"
)

// Images is the Docker-backed image service in sessionapi's plain terms,
// for check_and_pull, push_image and purge_images.
type Images struct {
	svc *images.Service
}

// NewImages wraps an image service.
func NewImages(svc *images.Service) *Images { return &Images{svc: svc} }

// NeedsPull says whether the image named canonical must be pulled under
// the auto_pull policy (digest, tag or none).
func (i *Images) NeedsPull(ctx context.Context, canonical string, img sessionapi.ImageConfig, policy string) (bool, error) {
	return i.svc.NeedsPull(ctx, imageSpec(canonical, img), images.Policy(policy))
}

// Pull pulls the image named canonical with its registry's credentials.
func (i *Images) Pull(ctx context.Context, canonical string, img sessionapi.ImageConfig) error {
	return i.svc.Pull(ctx, imageSpec(canonical, img))
}

// Push pushes a local image to reg.
func (i *Images) Push(ctx context.Context, canonical string, reg sessionapi.ImageRegistry) error {
	return i.svc.Push(ctx, images.Image{Ref: canonical, Registry: images.Registry(reg)})
}

// Remove deletes a local image as purge_images does.
func (i *Images) Remove(ctx context.Context, ref string, force, noprune bool) error {
	return i.svc.Remove(ctx, ref, images.RemoveOptions{Force: force, NoPrune: noprune})
}
