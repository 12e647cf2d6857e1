package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// WritePIDFile writes this process's id to path (agent.pid-file, or
// $BACKEND_PID_FILE) as upstream's server does at start, and returns the
// function that removes it on stop. Upstream's default, /dev/null, and an
// empty path write nothing. The file is removed only while it is a regular
// file that still holds our pid, so a second agent's file survives.
func WritePIDFile(path string) (remove func() error, err error) {
	noop := func() error { return nil }
	if path == "" || path == os.DevNull {
		return noop, nil
	}
	if info, err := os.Stat(path); err == nil && !info.Mode().IsRegular() {
		return nil, fmt.Errorf("agent.pid-file: %s exists and is not a regular file", path)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(path, pid, 0o644); err != nil {
		return nil, fmt.Errorf("agent.pid-file: %w", err)
	}
	return func() error {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return fmt.Errorf("agent.pid-file: %w", err)
		case !bytes.Equal(bytes.TrimSpace(data), pid):
			return nil // another process's now
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("agent.pid-file: %w", err)
		}
		return nil
	}, nil
}
