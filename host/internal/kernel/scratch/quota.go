package scratch

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Upstream never enforces scratch-size on a hostdir scratch (it is only
// written to resource.txt). baiagent does where the scratch root's
// filesystem has project quotas: each scratch dir gets a project id of its
// own, inherited by everything created below it, and a block hard limit.

// Project ids baiagent hands out: [projectIDBase, projectIDBase+projectIDSpan).
// High, so they stay clear of the small ids operators number their
// projects with and Docker's overlay2 quota counts up from.
const (
	projectIDBase  = 0x4000_0000
	projectIDSpan  = 1 << 28
	projectProbes  = 64
	quotaBlockSize = 1024 // if_dqblk's limits count 1 KiB blocks
)

// Linux quota and fsxattr ABI (linux/quota.h, linux/dqblk_xfs.h,
// linux/fs.h) that x/sys/unix does not carry. The ioctl numbers are the
// generic _IOR/_IOW encoding (amd64, arm64).
const (
	prjQuota           = 2
	qGetQuota          = 0x800007
	qSetQuota          = 0x800008
	qXGetQStatV        = 'X'<<8 + 8
	qifBLimits         = 1
	qifILimits         = 4
	fsQStatVVersion1   = 1
	fsQuotaPDQEnfd     = 1 << 5
	fsIocFSGetXAttr    = 0x801c581f
	fsIocFSSetXAttr    = 0x401c5820
	fsXFlagProjInherit = 0x200
	xfsSuperMagic      = 0x58465342
	btrfsSuperMagic    = 0x9123683e
	overlaySuperMagic  = 0x794c7630
	zfsSuperMagic      = 0x2fc12fc1
	nfsSuperMagic      = 0x6969
)

func qcmd(cmd, typ uint32) uint32 { return cmd<<8 | typ&0xff }

// ifDqblk is struct if_dqblk.
type ifDqblk struct {
	BHardLimit, BSoftLimit, CurSpace  uint64
	IHardLimit, ISoftLimit, CurInodes uint64
	BTime, ITime                      uint64
	Valid                             uint32
	_                                 uint32
}

// fsQuotaStatV is struct fs_quota_statv.
type fsQuotaStatV struct {
	Version   int8
	_         uint8
	Flags     uint16
	InCoreDQs uint32
	Files     [3]struct {
		Ino, NBlks  uint64
		NExtents, _ uint32
	}
	TimeLimits [3]int32
	WarnLimits [3]uint16
	_          uint16
	_          uint32
	_          [7]uint64
}

// fsxattr is struct fsxattr.
type fsxattr struct {
	XFlags, ExtSize, NExtents, ProjID, CowExtSize uint32
	_                                             [8]byte
}

func getQuota(fd int, id uint32, dq *ifDqblk) error {
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(qcmd(qGetQuota, prjQuota)), uintptr(id), uintptr(unsafe.Pointer(dq)), 0, 0)
	return errnoErr(e)
}

func setQuota(fd int, id uint32, dq *ifDqblk) error {
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(qcmd(qSetQuota, prjQuota)), uintptr(id), uintptr(unsafe.Pointer(dq)), 0, 0)
	return errnoErr(e)
}

func quotaState(fd int, st *fsQuotaStatV) error {
	st.Version = fsQStatVVersion1
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(qcmd(qXGetQStatV, prjQuota)), 0, uintptr(unsafe.Pointer(st)), 0, 0)
	return errnoErr(e)
}

func getXAttr(fd int, x *fsxattr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFSGetXAttr, uintptr(unsafe.Pointer(x)))
	return errnoErr(e)
}

func setXAttr(fd int, x *fsxattr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFSSetXAttr, uintptr(unsafe.Pointer(x)))
	return errnoErr(e)
}

// haveQuotactlFD tells a kernel without quotactl_fd (older than 5.14, or
// built without CONFIG_QUOTA), which answers ENOSYS, from a filesystem
// without quota support, which answers ENOSYS too: the syscall itself
// refuses a bad fd with EBADF.
func haveQuotactlFD() bool {
	_, _, e := unix.Syscall6(unix.SYS_QUOTACTL_FD, ^uintptr(0), uintptr(qcmd(qXGetQStatV, prjQuota)), 0, 0, 0, 0)
	return e != unix.ENOSYS
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// ProjectQuota limits hostdir scratch dirs on one filesystem.
type ProjectQuota struct {
	fsName string
	// mu makes probing for a free project id and claiming it one step
	// within this agent.
	mu sync.Mutex
}

// SizeLimit is what container.scratch-size does for a scratch type on a
// scratch root.
type SizeLimit struct {
	// Quota is set when hostdir scratch dirs get a project quota.
	Quota *ProjectQuota
	// Enforced says a kernel cannot write more than scratch-size.
	Enforced bool
	// Detail says how it is enforced, or why not.
	Detail string
}

// PlanSizeLimit finds what scratch-size of size bytes can mean for kind on
// root. A root that does not exist yet is judged by the nearest directory
// above it, where it will be made.
func PlanSizeLimit(kind Kind, root string, size int64) SizeLimit {
	switch {
	case kind == Memory:
		return SizeLimit{Detail: fmt.Sprintf("memory scratch dirs are %d MiB tmpfs mounts whatever scratch-size says, as upstream", MemorySize>>20)}
	case kind == HostFile:
		return SizeLimit{Enforced: true, Detail: fmt.Sprintf("each kernel's scratch dir is an ext4 filesystem of %d bytes in <scratch-root>/<kernel-id>.img", size)}
	case size <= 0:
		return SizeLimit{Detail: "scratch-size 0: no limit"}
	}
	dir, err := existingAncestor(root)
	if err != nil {
		return SizeLimit{Detail: fmt.Sprintf("cannot enforce scratch-size: %v; it is only advertised in resource.txt", err)}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return SizeLimit{Detail: fmt.Sprintf("cannot enforce scratch-size: open %s: %v; it is only advertised in resource.txt", dir, err)}
	}
	defer unix.Close(fd)
	name := fsName(fd)
	var st fsQuotaStatV
	switch err := quotaState(fd, &st); {
	case errors.Is(err, unix.ENOSYS) && !haveQuotactlFD():
		return SizeLimit{Detail: fmt.Sprintf("the %s filesystem at %s cannot enforce scratch-size: this kernel has no quotactl_fd (Linux 5.14 or later, built with CONFIG_QUOTA, has); it is only advertised in resource.txt", name, dir)}
	case err != nil:
		return SizeLimit{Detail: fmt.Sprintf("the %s filesystem at %s cannot enforce scratch-size (no project quotas: %v; XFS or ext4 with the project feature, mounted with prjquota, can); it is only advertised in resource.txt", name, dir, err)}
	case st.Flags&fsQuotaPDQEnfd == 0:
		return SizeLimit{Detail: fmt.Sprintf("the %s filesystem at %s cannot enforce scratch-size (project quotas are not enforced; mount it with prjquota); it is only advertised in resource.txt", name, dir)}
	}
	return SizeLimit{Quota: &ProjectQuota{fsName: name}, Enforced: true,
		Detail: fmt.Sprintf("each kernel's scratch dir gets a project quota of %d bytes on the %s filesystem at %s", size, name, dir)}
}

func existingAncestor(root string) (string, error) {
	dir, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no directory of %s exists", root)
		}
		dir = parent
	}
}

// fsName names the filesystem type of fd for messages.
func fsName(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case xfsSuperMagic:
		return "xfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case btrfsSuperMagic:
		return "btrfs"
	case overlaySuperMagic:
		return "overlay"
	case zfsSuperMagic:
		return "zfs"
	case nfsSuperMagic:
		return "nfs"
	}
	return fmt.Sprintf("type %#x", st.Type)
}

// firstProjectID is where the search for kernelID's project id starts: a
// hash of the id, so a kernel's project is the same on every run.
func firstProjectID(kernelID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(kernelID))
	return projectIDBase + h.Sum32()%projectIDSpan
}

func ownProjectID(id uint32) bool { return id >= projectIDBase && id < projectIDBase+projectIDSpan }

// limit gives dir a project id of its own, inherited below it, with a
// block hard limit of size. The id is the first from firstProjectID on
// that the filesystem has no usage or limits for: a used id belongs to
// another kernel or to the operator. Moving dir into the project charges
// its inode there, so the id is taken before mu is released.
func (q *ProjectQuota) limit(dir, kernelID string, size int64) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("project quota of %s: open: %w", dir, err)
	}
	defer unix.Close(fd)
	q.mu.Lock()
	defer q.mu.Unlock()
	id, err := freeProjectID(fd, kernelID)
	if err != nil {
		return fmt.Errorf("project quota of %s on %s: %w", dir, q.fsName, err)
	}
	var x fsxattr
	if err := getXAttr(fd, &x); err != nil {
		return fmt.Errorf("project quota of %s: FS_IOC_FSGETXATTR: %w", dir, err)
	}
	x.ProjID, x.XFlags = id, x.XFlags|fsXFlagProjInherit
	if err := setXAttr(fd, &x); err != nil {
		return fmt.Errorf("project quota of %s: set project %d (FS_IOC_FSSETXATTR): %w", dir, id, err)
	}
	dq := ifDqblk{BHardLimit: uint64((size + quotaBlockSize - 1) / quotaBlockSize), Valid: qifBLimits}
	if err := setQuota(fd, id, &dq); err != nil {
		return fmt.Errorf("project quota of %s: limit project %d to %d bytes (Q_SETQUOTA): %w", dir, id, size, err)
	}
	return nil
}

func freeProjectID(fd int, kernelID string) (uint32, error) {
	first := firstProjectID(kernelID)
	for i := range uint32(projectProbes) {
		id := projectIDBase + (first-projectIDBase+i)%projectIDSpan
		var dq ifDqblk
		err := getQuota(fd, id, &dq)
		if errors.Is(err, unix.ENOENT) {
			return id, nil // XFS: no dquot, so nothing uses it
		}
		if err != nil {
			return 0, fmt.Errorf("read project %d (Q_GETQUOTA): %w", id, err)
		}
		if dq.CurSpace == 0 && dq.CurInodes == 0 && dq.BHardLimit == 0 && dq.BSoftLimit == 0 &&
			dq.IHardLimit == 0 && dq.ISoftLimit == 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free project id in %d tries from %d", projectProbes, first)
}

// clearProjectQuota lifts the limit of dir's project when it is one of
// ours. A dir that is gone, or on a filesystem without project ids or
// quotas, has nothing to lift.
func clearProjectQuota(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // gone, or not a directory we made
	}
	defer unix.Close(fd)
	var x fsxattr
	if err := getXAttr(fd, &x); err != nil || !ownProjectID(x.ProjID) {
		return nil
	}
	dq := ifDqblk{Valid: qifBLimits | qifILimits}
	switch err := setQuota(fd, x.ProjID, &dq); {
	case err == nil, errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOSYS):
		// ESRCH: quotas are off now, so no limit applies.
		return nil
	default:
		return fmt.Errorf("project quota of %s: lift the limit of project %d (Q_SETQUOTA): %w", dir, x.ProjID, err)
	}
}
