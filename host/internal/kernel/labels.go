package kernel

import (
	"errors"
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
	// LabelBlockServicePorts is "1" when internal_data.block_service_ports
	// refuses start_service (the ports are published all the same).
	LabelBlockServicePorts = "ai.backend.internal.block-service-ports"
	LabelClusterRole       = "ai.backend.cluster-role"
	LabelClusterIdx        = "ai.backend.cluster-idx"
	LabelClusterHost       = "ai.backend.cluster-hostname"
	// LabelScratchRoot is ours: the scratch root the kernel's files live
	// under, so recovery finds them even if the configuration changed.
	LabelScratchRoot = "ai.backend.baiagent.scratch-root"

	ImageLabelRuntimeType  = "ai.backend.runtime-type"
	ImageLabelRuntimePath  = "ai.backend.runtime-path"
	ImageLabelServicePorts = "ai.backend.service-ports"
	// ImageLabelEndpointPorts names the services that serve inference.
	ImageLabelEndpointPorts = "ai.backend.endpoint-ports"
)

// Errors of a kernel's requested ports, upstream's ReservedPortError and
// PortConflictError.
var (
	ErrReservedPort = errors.New("reserved port")
	ErrPortConflict = errors.New("port conflict")
)

// ServicePort is one entry of a service-ports label: a named service on one
// or more container ports.
type ServicePort struct {
	Name     string
	Protocol string // tcp, http, preopen, vnc or rdp
	Ports    []int
	// IsInference marks the services ai.backend.endpoint-ports names.
	IsInference bool
}

// servicePortEntry is upstream's _rx_service_ports (common/service_ports.py),
// with Python's \w narrowed to ASCII: one entry at the start of the rest of
// the label, ending at a comma or the end.
var servicePortEntry = regexp.MustCompile(`^([A-Za-z0-9_-]+):([A-Za-z0-9_]+):(\[\d+(?:,\d+)*\]|\d+)(?:,|$)`)

// ServicePortProtocols are the protocols upstream's ServicePortProtocols
// accepts in an image label.
var ServicePortProtocols = []string{"tcp", "http", "preopen", "vnc", "rdp"}

// IsReservedServicePort says whether a container port belongs to the
// runner (2000-2003) or to an intrinsic service (sshd 2200, ttyd 7681).
func IsReservedServicePort(p int) bool {
	return (p >= 2000 && p <= 2003) || p == protocol.SSHDPort || p == TTYDPort
}

// TTYDPort is upstream's web terminal; the runner does not serve it, but
// the port stays reserved as upstream keeps it.
const TTYDPort = 7681

// ParseServicePorts reads an image's ai.backend.service-ports label as
// upstream's parse_service_ports does: "name:proto:port" or
// "name:proto:[p1,p2]" entries separated by commas; pty entries are
// skipped; other protocols than tcp, http, preopen, vnc and rdp, ports
// <= 1024 or >= 65535, the reserved ports and a port used twice are
// refused. endpointLabel (ai.backend.endpoint-ports) is a comma-separated
// list of the names that serve inference. Unlike upstream, a service named
// twice is refused too.
func ParseServicePorts(label, endpointLabel string) ([]ServicePort, error) {
	inference := strings.Split(endpointLabel, ",")
	var out []ServicePort
	used := map[int]bool{}
	seen := map[string]bool{}
	for rest := label; rest != ""; {
		m := servicePortEntry.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("invalid service-ports format at %q: want name:protocol:port or name:protocol:[ports]", rest)
		}
		rest = rest[len(m[0]):]
		sp := ServicePort{Name: m[1], Protocol: m[2], IsInference: slices.Contains(inference, m[1])}
		if sp.Protocol == "pty" {
			continue // upstream: unsupported, skipped
		}
		if !slices.Contains(ServicePortProtocols, sp.Protocol) {
			return nil, fmt.Errorf("unsupported service port protocol: %s", sp.Protocol)
		}
		for _, p := range strings.Split(strings.Trim(m[3], "[]"), ",") {
			port, err := strconv.Atoi(p)
			if err != nil {
				port = 65535 // too many digits: refused as too large
			}
			switch {
			case used[port]:
				return nil, fmt.Errorf("service %s: the port %d is already used by another service port", sp.Name, port)
			case port <= 1024:
				return nil, fmt.Errorf("service %s: the service port number %d must be larger than 1024 to run without the root privilege", sp.Name, port)
			case port >= 65535:
				return nil, fmt.Errorf("service %s: the service port number %s must be smaller than 65535", sp.Name, p)
			case IsReservedServicePort(port):
				return nil, fmt.Errorf("service %s: the service ports 2000 to 2003, 2200 and 7681 are reserved for internal use", sp.Name)
			}
			used[port] = true
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

// PreopenServicePorts are the request's preopen ports as upstream
// publishes them: named by the port number, protocol preopen, nothing
// started for them. The runner's ports are ErrReservedPort; sshd's and
// ttyd's ports and a port given twice are ErrPortConflict.
func PreopenServicePorts(ports []int) ([]ServicePort, error) {
	out := make([]ServicePort, 0, len(ports))
	taken := map[int]string{protocol.SSHDPort: protocol.SSHDService, TTYDPort: "ttyd"}
	for _, p := range ports {
		if p >= 2000 && p <= 2003 {
			return nil, fmt.Errorf("%w: preopen port %d: ports 2000 to 2003 are reserved for internal use", ErrReservedPort, p)
		}
		if name, ok := taken[p]; ok {
			return nil, fmt.Errorf("%w: preopen port %d overlaps with built-in service %s", ErrPortConflict, p, name)
		}
		name := strconv.Itoa(p)
		taken[p] = name
		out = append(out, ServicePort{Name: name, Protocol: "preopen", Ports: []int{p}})
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
