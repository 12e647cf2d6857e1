package events

import "github.com/baiagent/baiagent/host/internal/wiremsg"

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

func (e AgentInstalledImagesRemove) images() wiremsg.Dict {
	m := make(wiremsg.Dict, 0, len(e.Images))
	for _, img := range e.Images {
		m = append(m, wiremsg.KV{Key: img.Canonical, Value: wiremsg.Dict{
			{Key: "canonical", Value: img.Canonical}, {Key: "digest", Value: img.Digest},
		}})
	}
	return m
}

func (e AgentInstalledImagesRemove) Args() wiremsg.Tuple { return wiremsg.Tuple{e.images()} }
func (e AgentInstalledImagesRemove) Body() wiremsg.Dict {
	return wiremsg.Dict{{Key: "scanned_images", Value: e.images()}}
}

// Droppable is false: a lost removal leaves the manager scheduling kernels
// of an image this agent no longer has.
func (AgentInstalledImagesRemove) Droppable() bool { return false }
func (AgentInstalledImagesRemove) Broadcast() bool { return false }
