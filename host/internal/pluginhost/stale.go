package pluginhost

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
)

// A pid record remembers a plugin process so that an agent that was killed
// can stop the plugins it left behind at its next start. It stores the
// process start time and executable, so a reused PID is never killed.
type pidRecord struct {
	PID       int
	StartTime string
	Exe       string
}

func pidFilePath(runtimeDir, name string) string {
	return filepath.Join(runtimeDir, name+".pid")
}

func writePidRecord(runtimeDir, name string, pid int) error {
	start, err := processStartTime(pid)
	if err != nil {
		return err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("read exe of pid %d: %w", pid, err)
	}
	data := fmt.Sprintf("%d\n%s\n%s\n", pid, start, exe)
	if err := atomicfile.Write(pidFilePath(runtimeDir, name), []byte(data), 0o600); err != nil {
		return fmt.Errorf("pid record: %w", err)
	}
	return nil
}

func readPidRecord(path string) (pidRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return pidRecord{}, err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 3 {
		return pidRecord{}, fmt.Errorf("pid record %s: want 3 lines, got %d", path, len(lines))
	}
	pid, err := strconv.Atoi(lines[0])
	if err != nil || pid <= 1 {
		return pidRecord{}, fmt.Errorf("pid record %s: bad pid %q", path, lines[0])
	}
	return pidRecord{PID: pid, StartTime: lines[1], Exe: lines[2]}, nil
}

// processStartTime reads field 22 of /proc/<pid>/stat (clock ticks since
// boot), which tells a process apart from a later one with the same PID.
func processStartTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields resume after ")".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", fmt.Errorf("malformed stat of pid %d", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return "", fmt.Errorf("short stat of pid %d", pid)
	}
	return fields[19], nil
}

// StaleProcess is a plugin process left running by an earlier agent.
type StaleProcess struct {
	Name   string
	PID    int
	Killed bool
	Reason string
}

// cleanupStale kills plugin processes recorded in runtimeDir whose PID still
// names the same process (same start time and executable), and removes every
// record. It returns what it found.
func cleanupStale(runtimeDir string) ([]StaleProcess, error) {
	matches, err := filepath.Glob(filepath.Join(runtimeDir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var found []StaleProcess
	for _, path := range matches {
		name := strings.TrimSuffix(filepath.Base(path), ".pid")
		rec, err := readPidRecord(path)
		if err != nil {
			found = append(found, StaleProcess{Name: name, Reason: err.Error()})
			_ = os.Remove(path)
			continue
		}
		sp := StaleProcess{Name: name, PID: rec.PID}
		start, err := processStartTime(rec.PID)
		exe, exeErr := os.Readlink(fmt.Sprintf("/proc/%d/exe", rec.PID))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sp.Reason = "process already gone"
		case err != nil:
			sp.Reason = err.Error()
		case start != rec.StartTime:
			sp.Reason = "pid reused by another process"
		case exeErr != nil || exe != rec.Exe:
			sp.Reason = "pid runs another executable"
		default:
			if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				sp.Reason = fmt.Sprintf("kill: %v", err)
			} else {
				sp.Killed = true
			}
		}
		found = append(found, sp)
		_ = os.Remove(path)
	}
	return found, nil
}
