package scratch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
)

// RecoveryVersion is the recovery.json format this agent writes.
const RecoveryVersion = 1

// maxRecoveryFile bounds what is read back; a real file is a few KiB.
const maxRecoveryFile = 1 << 20

// Recovery is recovery.json: the registry entry of a kernel that Docker
// labels do not carry, so that a restarted agent can take the kernel back.
type Recovery struct {
	Version     int       `json:"version"`
	AgentID     string    `json:"agent_id"`
	KernelID    string    `json:"kernel_id"`
	SessionID   string    `json:"session_id"`
	Image       string    `json:"image"`
	RuntimeType string    `json:"runtime_type,omitempty"`
	RuntimePath string    `json:"runtime_path,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// ReplInPort and ReplOutPort are the host ports of container ports
	// 2000 and 2001, bound to 127.0.0.1.
	ReplInPort   int           `json:"repl_in_port"`
	ReplOutPort  int           `json:"repl_out_port"`
	ServicePorts []ServicePort `json:"service_ports"`
	// NetworkMode is the kernel's cluster_info network mode: "" (Docker's
	// default bridge or the session's bridge network) or "host".
	NetworkMode string `json:"network_mode,omitempty"`
	// UnpooledPorts are host ports the kernel uses that the port pool did
	// not hand out and must not take back: in host network mode the image
	// services' own ports, and a cluster_ssh_port_mapping sshd port
	// outside the pool's range.
	UnpooledPorts []int `json:"unpooled_ports,omitempty"`
}

// ServicePort is one service with its container and host ports.
type ServicePort struct {
	Name           string `json:"name"`
	Protocol       string `json:"protocol"`
	ContainerPorts []int  `json:"container_ports"`
	HostPorts      []int  `json:"host_ports"`
	IsInference    bool   `json:"is_inference,omitempty"`
	// URLTemplate, AllowedArguments and AllowedEnvs are what the runner's
	// get-apps reports for the service once the kernel is up, as
	// upstream's create_kernel merges them into service_ports.
	URLTemplate      string   `json:"url_template,omitempty"`
	AllowedArguments []string `json:"allowed_arguments,omitempty"`
	AllowedEnvs      []string `json:"allowed_envs,omitempty"`
}

// HostPorts lists every host port the kernel holds from the port pool
// (UnpooledPorts are left out).
func (r Recovery) HostPorts() []int {
	ports := []int{r.ReplInPort, r.ReplOutPort}
	for _, sp := range r.ServicePorts {
		for _, p := range sp.HostPorts {
			if !slices.Contains(r.UnpooledPorts, p) {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

// Validate checks what a reader relies on.
func (r Recovery) Validate() error {
	if r.Version != RecoveryVersion {
		return fmt.Errorf("recovery data version %d, want %d", r.Version, RecoveryVersion)
	}
	if _, err := For("/", r.KernelID); err != nil {
		return fmt.Errorf("recovery data: %w", err)
	}
	validPort := func(p int) bool { return p > 0 && p <= 65535 }
	if !validPort(r.ReplInPort) || !validPort(r.ReplOutPort) {
		return fmt.Errorf("recovery data: repl ports %d/%d out of range", r.ReplInPort, r.ReplOutPort)
	}
	for _, sp := range r.ServicePorts {
		if sp.Name == "" {
			return fmt.Errorf("recovery data: a service port without a name")
		}
		if len(sp.ContainerPorts) != len(sp.HostPorts) {
			return fmt.Errorf("recovery data: service %q has %d container ports and %d host ports",
				sp.Name, len(sp.ContainerPorts), len(sp.HostPorts))
		}
		for i := range sp.HostPorts {
			if !validPort(sp.HostPorts[i]) || !validPort(sp.ContainerPorts[i]) {
				return fmt.Errorf("recovery data: service %q: port out of range", sp.Name)
			}
		}
	}
	return nil
}

// DecodeRecovery parses and validates recovery.json; unknown fields are
// refused so that a file from a newer agent is not half understood.
func DecodeRecovery(raw []byte) (Recovery, error) {
	if len(raw) > maxRecoveryFile {
		return Recovery{}, fmt.Errorf("recovery data of %d bytes exceeds %d", len(raw), maxRecoveryFile)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var r Recovery
	if err := dec.Decode(&r); err != nil {
		return Recovery{}, fmt.Errorf("recovery data: %w", err)
	}
	if dec.More() {
		return Recovery{}, fmt.Errorf("recovery data: trailing data after the object")
	}
	if err := r.Validate(); err != nil {
		return Recovery{}, err
	}
	return r, nil
}

// WriteRecovery writes config/recovery.json.
func WriteRecovery(d Dirs, r Recovery) error {
	if err := r.Validate(); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("recovery data: %w", err)
	}
	return atomicfile.Write(filepath.Join(d.Config, RecoveryFile), append(raw, '\n'), 0o644)
}

// ReadRecovery reads config/recovery.json.
func ReadRecovery(d Dirs) (Recovery, error) {
	f, err := os.Open(filepath.Join(d.Config, RecoveryFile))
	if err != nil {
		return Recovery{}, err
	}
	defer f.Close()
	raw, err := readLimited(f, maxRecoveryFile+1)
	if err != nil {
		return Recovery{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return DecodeRecovery(raw)
}

func readLimited(f *os.File, limit int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(io.LimitReader(f, limit))
	return b.Bytes(), err
}
