package kernel

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// Docker labels of kernel containers (upstream's ai.backend.* labels) and
// the image labels the agent reads.
const (
	LabelAgentID        = "ai.backend.agent-id"
	LabelKernelID       = "ai.backend.kernel-id"
	LabelSessionID      = "ai.backend.session-id"
	LabelOwner          = "ai.backend.owner"
	LabelOwnerUserID    = "ai.backend.owner-user-id"
	LabelOwnerProjectID = "ai.backend.owner-project-id"
	LabelServicePorts   = "ai.backend.service-ports"
	LabelClusterRole    = "ai.backend.cluster-role"
	LabelClusterIdx     = "ai.backend.cluster-idx"
	LabelClusterHost    = "ai.backend.cluster-hostname"
	// LabelScratchRoot is ours: the scratch root the kernel's files live
	// under, so recovery finds them even if the configuration changed.
	LabelScratchRoot = "ai.backend.baiagent.scratch-root"

	ImageLabelRuntimeType  = "ai.backend.runtime-type"
	ImageLabelRuntimePath  = "ai.backend.runtime-path"
	ImageLabelServicePorts = "ai.backend.service-ports"
)

// ServicePort is one entry of a service-ports label: a named service on one
// or more container ports.
type ServicePort struct {
	Name     string
	Protocol string // tcp, http, pty, preopen, ...
	Ports    []int
}

var servicePortEntry = regexp.MustCompile(`^([a-zA-Z0-9._-]+):([a-z]+):(\d+|\[\d+(?:,\d+)*\])$`)

// ParseServicePorts reads upstream's service-ports label:
// "name:proto:port" or "name:proto:[p1,p2]" entries separated by commas
// (commas inside brackets belong to the entry). Ports 2000-2003 belong to
// the runner and are refused, as upstream does.
func ParseServicePorts(label string) ([]ServicePort, error) {
	label = strings.TrimSpace(label)
	if label == "" {
		return nil, nil
	}
	var entries []string
	depth, start := 0, 0
	for i, c := range label {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				entries = append(entries, label[start:i])
				start = i + 1
			}
		}
	}
	entries = append(entries, label[start:])
	var out []ServicePort
	seen := map[string]bool{}
	for _, e := range entries {
		m := servicePortEntry.FindStringSubmatch(strings.TrimSpace(e))
		if m == nil {
			return nil, fmt.Errorf("service port %q: want name:protocol:port or name:protocol:[ports]", e)
		}
		sp := ServicePort{Name: m[1], Protocol: m[2]}
		for _, p := range strings.Split(strings.Trim(m[3], "[]"), ",") {
			port, err := strconv.Atoi(p)
			if err != nil || port < 1 || port > 65535 {
				return nil, fmt.Errorf("service port %q: port %q out of range", e, p)
			}
			if port >= 2000 && port <= 2003 {
				return nil, fmt.Errorf("service port %q: ports 2000-2003 are reserved for the kernel runner", e)
			}
			sp.Ports = append(sp.Ports, port)
		}
		if seen[sp.Name] {
			return nil, fmt.Errorf("service %q is listed twice", sp.Name)
		}
		seen[sp.Name] = true
		out = append(out, sp)
	}
	return out, nil
}

// WithIntrinsicServicePorts puts the runner's sshd before the given
// service ports, as upstream's _prepare_intrinsic_service_ports orders
// them, unless one of them is named sshd or takes its port already
// (upstream refuses such a kernel; here the image's wins). Upstream also
// lists ttyd (7681), a web terminal the runner does not serve.
func WithIntrinsicServicePorts(ports []ServicePort) []ServicePort {
	for _, sp := range ports {
		if sp.Name == protocol.SSHDService || slices.Contains(sp.Ports, protocol.SSHDPort) {
			return ports
		}
	}
	sshd := ServicePort{Name: protocol.SSHDService, Protocol: "tcp", Ports: []int{protocol.SSHDPort}}
	return append([]ServicePort{sshd}, ports...)
}

// FormatServicePorts writes the label ParseServicePorts reads.
func FormatServicePorts(ports []ServicePort) string {
	parts := make([]string, 0, len(ports))
	for _, sp := range ports {
		nums := make([]string, len(sp.Ports))
		for i, p := range sp.Ports {
			nums[i] = strconv.Itoa(p)
		}
		portText := strings.Join(nums, ",")
		if len(sp.Ports) != 1 {
			portText = "[" + portText + "]"
		}
		parts = append(parts, sp.Name+":"+sp.Protocol+":"+portText)
	}
	return strings.Join(parts, ",")
}

var unsafeNameChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// ContainerName is upstream's kernel.<image>.<kernel-id>: the image's last
// path element without tag or digest, reduced to what Docker allows.
func ContainerName(image, kernelID string) string {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	name = strings.Trim(unsafeNameChars.ReplaceAllString(name, "-"), "-.")
	if name == "" {
		name = "image"
	}
	return "kernel." + name + "." + unsafeNameChars.ReplaceAllString(kernelID, "-")
}
