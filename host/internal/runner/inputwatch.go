package runner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// waitSyscalls are, by architecture, the syscall numbers of read and readv
// (a process blocked in one with fd 0 as its first argument waits for
// input) and of poll and ppoll (busybox's read builtin polls fd 0 first).
func waitSyscalls() (reads, polls []int64) {
	switch runtime.GOARCH {
	case "amd64":
		return []int64{0, 19}, []int64{7, 271}
	case "arm64", "riscv64", "loong64":
		return []int64{63, 65}, []int64{73}
	}
	return nil, nil
}

// inputWatcher tells whether a process tree is blocked reading the user's
// input pipe. Upstream's runners learn it from their own input() hook; a
// shell has no such hook, so the runner looks at /proc instead: a process
// whose fd 0 is the input pipe and whose current syscall is read(0, ...).
type inputWatcher struct {
	procRoot string
	pipeLink string // "pipe:[inode]" as /proc/PID/fd/0 shows it
	readNrs  []int64
	pollNrs  []int64
	// cred is the kernel user. /proc/PID/{fd,syscall,mem} of a process of
	// another user need CAP_SYS_PTRACE, which a kernel's root lacks (as
	// upstream's); the check compares the caller's filesystem ids, so the
	// watcher reads them with the user's fsuid/fsgid.
	cred *syscall.Credential
}

func newInputWatcher(procRoot string, input *os.File) (*inputWatcher, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(input.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat input pipe: %w", err)
	}
	reads, polls := waitSyscalls()
	return &inputWatcher{procRoot: procRoot, pipeLink: fmt.Sprintf("pipe:[%d]", st.Ino), readNrs: reads, pollNrs: polls}, nil
}

// Waiting reports whether root or one of its descendants waits for input.
func (w *inputWatcher) Waiting(root int) bool {
	if root <= 0 || len(w.readNrs) == 0 {
		return false
	}
	if w.cred != nil {
		runtime.LockOSThread()
		if !setFSIDs(int(w.cred.Uid), int(w.cred.Gid)) {
			runtime.UnlockOSThread()
			return false
		}
		defer func() {
			// The thread keeps the user's ids if they cannot be undone:
			// still locked, it ends with this goroutine.
			if setFSIDs(0, 0) {
				runtime.UnlockOSThread()
			}
		}()
	}
	for _, pid := range w.tree(root) {
		if w.blockedOnInput(pid) {
			return true
		}
	}
	return false
}

func (w *inputWatcher) blockedOnInput(pid int) bool {
	dir := filepath.Join(w.procRoot, strconv.Itoa(pid))
	link, err := os.Readlink(filepath.Join(dir, "fd", "0"))
	if err != nil || link != w.pipeLink {
		return false
	}
	raw, err := os.ReadFile(filepath.Join(dir, "syscall"))
	if err != nil {
		return false
	}
	nr, args, ok := parseSyscallLine(raw)
	if !ok {
		return false
	}
	if slices.Contains(w.readNrs, nr) {
		return args[0] == 0
	}
	if slices.Contains(w.pollNrs, nr) {
		return pollsStdin(filepath.Join(dir, "mem"), args[0], args[1])
	}
	return false
}

// pollsStdin reads the pollfd array of a blocked poll from the process's
// memory (allowed for our own descendants) and looks for fd 0.
func pollsStdin(memPath string, addr, nfds uint64) bool {
	const pollfdSize = 8 // int fd; short events; short revents
	if nfds == 0 || nfds > 64 {
		return false
	}
	f, err := os.Open(memPath)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, nfds*pollfdSize)
	if _, err := f.ReadAt(buf, int64(addr)); err != nil {
		return false
	}
	for i := uint64(0); i < nfds; i++ {
		if int32(binary.NativeEndian.Uint32(buf[i*pollfdSize:])) == 0 {
			return true
		}
	}
	return false
}

// parseSyscallLine reads "NR ARG0 ARG1 ..." from /proc/PID/syscall; a
// running process shows "running", which is not a blocked call.
func parseSyscallLine(raw []byte) (nr int64, args [2]uint64, ok bool) {
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return 0, args, false
	}
	nr, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return 0, args, false
	}
	for i := range args {
		if args[i], err = strconv.ParseUint(strings.TrimPrefix(fields[i+1], "0x"), 16, 64); err != nil {
			return 0, args, false
		}
	}
	return nr, args, true
}

// tree lists root and its descendants from /proc/*/stat.
func (w *inputWatcher) tree(root int) []int {
	entries, err := os.ReadDir(w.procRoot)
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(w.procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if ppid, ok := parentPID(raw); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// parentPID reads field 4 of /proc/PID/stat; the command name in field 2
// may hold spaces and parentheses, so parsing starts after the last ')'.
func parentPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// setFSIDs sets this thread's filesystem uid and gid (setfsuid/setfsgid
// act on the calling thread only) and reports whether both took.
func setFSIDs(uid, gid int) bool {
	// setfsgid first while still privileged; each returns the previous id.
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	// Called with -1, they change nothing and return the current ids.
	cg, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, ^uintptr(0), 0, 0)
	cu, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0)
	return int(cg) == gid && int(cu) == uid
}
