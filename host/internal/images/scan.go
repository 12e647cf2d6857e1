package images

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Installed is one local kernel image as the manager learns it: upstream's
// InstalledImageInfo (common/data/image/types.py).
type Installed struct {
	// Canonical is the repo tag as Docker lists it.
	Canonical string
	// Digest is the image ID ("sha256:<config digest>").
	Digest string
	// Architecture is the image's own, in upstream's spelling (x86_64,
	// aarch64), which is not necessarily the host's.
	Architecture string
}

// Upstream's bounds on ai.backend.kernelspec (MIN_KERNELSPEC, MAX_KERNELSPEC).
const (
	minKernelSpec = 1
	maxKernelSpec = 1
)

// imageTag is upstream's rx_slug, which an image's tag must match.
var imageTag = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-._]*[A-Za-z0-9])?$`)

// kernelImage is upstream's scan_images test of one tagged image
// (agent/docker/agent.py): its config has labels (an empty set counts,
// none at all does not), its name is one ImageRef.parse_image_str(name,
// "*") accepts, and its ai.backend.kernelspec (1 when missing) is an
// integer in range.
func kernelImage(repoTag string, labels map[string]string) bool {
	if labels == nil || repoTag == "" || strings.HasSuffix(repoTag, "<none>") {
		return false
	}
	if strings.Contains(repoTag, "://") || strings.HasPrefix(repoTag, "//") {
		return false
	}
	nameAndTag := repoTag
	if _, rest, ok := strings.Cut(repoTag, "/"); ok {
		nameAndTag = rest // with registry "*", everything before the first / is the registry
	}
	name, tag := nameAndTag, "latest"
	if i := strings.LastIndexByte(nameAndTag, ':'); i >= 0 {
		name, tag = nameAndTag[:i], nameAndTag[i+1:]
	}
	if name == "" || !imageTag.MatchString(tag) {
		return false
	}
	spec := minKernelSpec
	if raw, ok := labels["ai.backend.kernelspec"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return false
		}
		spec = n
	}
	return spec >= minKernelSpec && spec <= maxKernelSpec
}

// archName is upstream's arch_name_aliases (common/arch.py); an image
// without an architecture is x86_64, as from_inspect_result assumes.
func archName(arch string) string {
	switch arch {
	case "":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "amd64", "x64":
		return "x86_64"
	case "x32", "i686":
		return "x86"
	}
	return arch
}

// scan lists the local kernel images, sorted by name. Each image is
// inspected for its labels and architecture, as upstream's scan_images
// does, but only the first time its ID is seen (s.inspected). Callers hold
// scanMu.
func (s *Service) scan(ctx context.Context) ([]Installed, error) {
	list, err := s.docker.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Installed
	seen := make(map[string]inspectedImage, len(list.Items))
	for _, img := range list.Items {
		if len(img.RepoTags) == 0 {
			continue
		}
		info, ok := s.inspected[img.ID]
		if !ok {
			insp, err := s.docker.ImageInspect(ctx, img.ID)
			if cerrdefs.IsNotFound(err) {
				continue // removed since the list
			}
			if err != nil {
				return nil, fmt.Errorf("inspect image %s: %w", img.ID, err)
			}
			info = inspectedImage{id: insp.ID, architecture: archName(insp.Architecture)}
			if insp.Config != nil {
				info.labels = insp.Config.Labels
			}
		}
		seen[img.ID] = info
		for _, tag := range img.RepoTags {
			if kernelImage(tag, info.labels) {
				out = append(out, Installed{Canonical: tag, Digest: info.id, Architecture: info.architecture})
			}
		}
	}
	s.inspected = seen // images gone from Docker leave the cache
	slices.SortFunc(out, func(x, y Installed) int { return strings.Compare(x.Canonical, y.Canonical) })
	return out, nil
}

// inspectedImage is what scan keeps of one docker image inspect.
type inspectedImage struct {
	id           string
	labels       map[string]string
	architecture string
}

// Rescan lists the local kernel images and the ones that were there at
// the previous successful rescan and are gone now, which the manager
// learns through agent_installed_images_remove (upstream's
// scan_images_periodically, agent/agent.py). When Docker fails it returns
// the previous list with the error, as upstream's heartbeat keeps its
// last scan.
func (s *Service) Rescan(ctx context.Context) (current, removed []Installed, err error) {
	s.scanMu.Lock() // held across the scan: a slower, older scan never overwrites a newer one
	defer s.scanMu.Unlock()
	scanned, err := s.scan(ctx)
	if err != nil {
		previous := slices.SortedFunc(maps.Values(s.known), func(x, y Installed) int { return strings.Compare(x.Canonical, y.Canonical) })
		return previous, nil, err
	}
	now := make(map[string]Installed, len(scanned))
	for _, img := range scanned {
		now[img.Canonical] = img
	}
	for _, name := range slices.Sorted(maps.Keys(s.known)) {
		if _, ok := now[name]; !ok {
			removed = append(removed, s.known[name])
		}
	}
	s.known = now
	return scanned, removed, nil
}
