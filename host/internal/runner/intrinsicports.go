package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// IntrinsicPortsPath is where the agent puts the host ports of a kernel in
// host network mode (the kernel package's intrinsic-ports.json).
const IntrinsicPortsPath = "/home/config/intrinsic-ports.json"

// ApplyIntrinsicPorts moves the REPL sockets and the boot sshd to the
// ports in path ({"replin", "replout", "sshd"}, numbers or numeric
// strings), as upstream's runner reads intrinsic-ports.json: on the
// host's network the fixed 2000/2001/2200 would collide between kernels.
// The REPL sockets then bind 127.0.0.1 only, where the agent reaches
// them, since they would otherwise be open on every host interface. A
// missing file changes nothing.
func ApplyIntrinsicPorts(cfg *Config, path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("intrinsic ports: %w", err)
	}
	ports, err := parseIntrinsicPorts(raw)
	if err != nil {
		return fmt.Errorf("intrinsic ports %s: %w", path, err)
	}
	if p, ok := ports["replin"]; ok {
		cfg.InputAddr = fmt.Sprintf("tcp://127.0.0.1:%d", p)
	}
	if p, ok := ports["replout"]; ok {
		cfg.OutputAddr = fmt.Sprintf("tcp://127.0.0.1:%d", p)
	}
	if p, ok := ports["sshd"]; ok {
		cfg.SSHD.BootPort = p
	}
	return nil
}

// parseIntrinsicPorts reads {name: port}; upstream's defaults are strings,
// so a numeric string is a port too. Other names (ttyd) are kept.
func parseIntrinsicPorts(raw []byte) (map[string]int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	out := make(map[string]int, len(m))
	for name, v := range m {
		var n int
		var s string
		switch {
		case json.Unmarshal(v, &n) == nil:
		case json.Unmarshal(v, &s) == nil:
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				return nil, fmt.Errorf("%q: %q is not a port number", name, s)
			}
		default:
			return nil, fmt.Errorf("%q: %s is not a port number", name, v)
		}
		if n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%q: port %d is out of range", name, n)
		}
		out[name] = n
	}
	return out, nil
}
