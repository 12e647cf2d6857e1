package tpu

import (
	"context"

	"github.com/baiagent/baiagent/proto/sdk"
)

// NodeMetrics reports nothing. Neither the accel driver nor vfio-pci
// exposes TPU utilisation, HBM use, temperature or power in sysfs (the
// fixtures mirror that); those come from libtpu's runtime metrics service
// inside the workload, which a node agent cannot reach.
func (p *Plugin) NodeMetrics(context.Context) ([]sdk.Metric, error) { return nil, nil }

// ContainerMetrics reports nothing, for the same reason.
func (p *Plugin) ContainerMetrics(context.Context, []sdk.ContainerRef) ([]sdk.Metric, error) {
	return nil, nil
}
