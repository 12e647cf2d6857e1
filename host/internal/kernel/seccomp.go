package kernel

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompProfile is Docker's default seccomp profile (moby/profiles: the
// rules the engine applies when a container names no profile) plus one
// rule allowing the plugins' syscalls (upstream's
// get_additional_allowed_syscalls), as the JSON that HostConfig.SecurityOpt
// takes after "seccomp=".
func seccompProfile(allowed []string) (string, error) {
	profile := seccomp.DefaultProfile()
	profile.Syscalls = append(profile.Syscalls, &seccomp.Syscall{
		LinuxSyscall: specs.LinuxSyscall{Names: slices.Clone(allowed), Action: specs.ActAllow},
		Comment:      "allowed by compute plugins",
	})
	raw, err := json.Marshal(profile)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	return string(raw), nil
}

// validSyscallName accepts what a syscall table entry looks like, so that
// a plugin's typo fails the kernel's creation with its name rather than
// as an opaque error from the container runtime.
func validSyscallName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
