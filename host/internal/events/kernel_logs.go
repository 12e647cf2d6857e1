package events

import "github.com/baiagent/baiagent/host/internal/wiremsg"

// DoSyncKernelLogs is do_sync_kernel_logs: (kernel_id, container_id), sent
// after a finished kernel's log was pushed to containerlog.{container_id}
// in Redis DB 6; the manager then moves it into kernels.container_log
// (common/events/event_types/kernel/anycast.py).
type DoSyncKernelLogs struct {
	KernelID    string
	ContainerID string
}

func (DoSyncKernelLogs) Name() string { return "do_sync_kernel_logs" }
func (e DoSyncKernelLogs) Args() wiremsg.Tuple {
	return wiremsg.Tuple{e.KernelID, e.ContainerID}
}
func (e DoSyncKernelLogs) Body() wiremsg.Dict {
	return wiremsg.Dict{{Key: "kernel_id", Value: e.KernelID}, {Key: "container_id", Value: e.ContainerID}}
}

// Droppable is false: without it the log stays in Redis until it expires.
func (DoSyncKernelLogs) Droppable() bool { return false }
func (DoSyncKernelLogs) Broadcast() bool { return false }
