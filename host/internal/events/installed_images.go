package events

import "github.com/baiagent/baiagent/host/internal/pywire"

// ScannedImage is one image of agent_installed_images_remove: upstream's
// ScannedImage (common/data/image/types.py).
type ScannedImage struct {
	Canonical string
	Digest    string
}

// AgentInstalledImagesRemove is agent_installed_images_remove:
// ({canonical: {"canonical", "digest"}},), sent when a rescan finds images
// gone, so that the manager stops placing kernels of them on this agent
// (common/events/event_types/agent/anycast.py).
type AgentInstalledImagesRemove struct {
	Images []ScannedImage
}

func (AgentInstalledImagesRemove) Name() string { return "agent_installed_images_remove" }

func (e AgentInstalledImagesRemove) images() pywire.Map {
	m := make(pywire.Map, 0, len(e.Images))
	for _, img := range e.Images {
		m = append(m, pywire.KV{Key: img.Canonical, Value: pywire.Map{
			{Key: "canonical", Value: img.Canonical}, {Key: "digest", Value: img.Digest},
		}})
	}
	return m
}

func (e AgentInstalledImagesRemove) Args() pywire.Tuple { return pywire.Tuple{e.images()} }
func (e AgentInstalledImagesRemove) Body() pywire.Map {
	return pywire.Map{{Key: "scanned_images", Value: e.images()}}
}

// Droppable is false: a lost removal leaves the manager scheduling kernels
// of an image this agent no longer has.
func (AgentInstalledImagesRemove) Droppable() bool { return false }
func (AgentInstalledImagesRemove) Broadcast() bool { return false }
