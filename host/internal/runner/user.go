package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// KernelUser is who the kernel's processes run as: upstream's entrypoint
// (runner/entrypoint.sh) su-execs its runner as LOCAL_USER_ID:LOCAL_GROUP_ID
// with ADDITIONAL_GIDS and 42; ours stays root and starts each child so.
type KernelUser struct {
	UID, GID int
	// AdditionalGIDs are ADDITIONAL_GIDS, in the order given.
	AdditionalGIDs []int
}

// Upstream's entrypoint defaults when the agent set no LOCAL_USER_ID.
const defaultKernelID = 9001

// shadowGID is reserved for "shadow" to allow password logins
// (lablup/backend.ai#751); upstream's su-exec always adds it.
const shadowGID = 42

// grpreadGID is the group upstream's entrypoint gives a user it creates.
const grpreadGID = 1002

// KernelUserFromEnv reads LOCAL_USER_ID, LOCAL_GROUP_ID and ADDITIONAL_GIDS
// as upstream's entrypoint does (9001 when unset).
func KernelUserFromEnv(env []string) (KernelUser, error) {
	get := func(k string) string {
		v := ""
		for _, kv := range env {
			if val, ok := strings.CutPrefix(kv, k+"="); ok {
				v = val // the last one wins, as in a process environment
			}
		}
		return strings.TrimSpace(v)
	}
	u := KernelUser{UID: defaultKernelID, GID: defaultKernelID}
	var err error
	if v := get("LOCAL_USER_ID"); v != "" {
		if u.UID, err = strconv.Atoi(v); err != nil || u.UID < 0 {
			return KernelUser{}, fmt.Errorf("LOCAL_USER_ID %q is not a user id", v)
		}
	}
	if v := get("LOCAL_GROUP_ID"); v != "" {
		if u.GID, err = strconv.Atoi(v); err != nil || u.GID < 0 {
			return KernelUser{}, fmt.Errorf("LOCAL_GROUP_ID %q is not a group id", v)
		}
	}
	for f := range strings.SplitSeq(get("ADDITIONAL_GIDS"), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		g, err := strconv.Atoi(f)
		if err != nil || g < 0 {
			return KernelUser{}, fmt.Errorf("ADDITIONAL_GIDS entry %q is not a group id", f)
		}
		if !slices.Contains(u.AdditionalGIDs, g) {
			u.AdditionalGIDs = append(u.AdditionalGIDs, g)
		}
	}
	return u, nil
}

// dbFile is /etc/passwd or /etc/group as lines of colon-separated fields.
// Lines that are not entries (comments, NIS "+" lines, blanks) are kept
// as they are.
type dbFile struct {
	lines  []string
	fields [][]string // nil for a line that is not an entry
}

func parseDB(raw []byte, nfields int) dbFile {
	var db dbFile
	text := string(raw)
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return db
	}
	for line := range strings.SplitSeq(text, "\n") {
		var f []string
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "-") {
			if parts := strings.Split(line, ":"); len(parts) == nfields && parts[0] != "" {
				if _, err := strconv.ParseUint(parts[2], 10, 32); err == nil {
					f = parts
				}
			}
		}
		db.lines = append(db.lines, line)
		db.fields = append(db.fields, f)
	}
	return db
}

func (db *dbFile) bytes() []byte {
	var b bytes.Buffer
	for i, line := range db.lines {
		if f := db.fields[i]; f != nil {
			line = strings.Join(f, ":")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// find is the first entry whose field i equals v, or -1.
func (db *dbFile) find(i int, v string) int {
	for n, f := range db.fields {
		if f != nil && f[i] == v {
			return n
		}
	}
	return -1
}

func (db *dbFile) add(f []string) {
	db.lines = append(db.lines, "")
	db.fields = append(db.fields, f)
}

func (db *dbFile) remove(n int) {
	db.lines = slices.Delete(db.lines, n, n+1)
	db.fields = slices.Delete(db.fields, n, n+1)
}

// addMember adds user to the member list of group entry n.
func addMember(f []string, user string) {
	members := strings.Split(f[3], ",")
	if f[3] == "" {
		members = nil
	}
	if !slices.Contains(members, user) {
		members = append(members, user)
	}
	f[3] = strings.Join(members, ",")
}

// workUser is user "work" as it stands after SetupUser: its passwd and
// group files, and every group it runs with.
type workUser struct {
	passwd, group []byte
	groups        []int
}

// setupWorkUser makes /etc/passwd and /etc/group hold user "work" with
// u's ids and home /home/work, as upstream's entrypoint does: the user
// owning the uid (renamed to work when it is another), else an existing
// "work" renumbered, else a new one; the group owning the gid, else
// "work" renumbered or new; the additional groups made as group<gid>
// where missing, with work a member of each. The groups it runs with are
// the gid, the additional gids, 42, and every group listing work, as
// su-exec's initgroups.
func setupWorkUser(passwdRaw, groupRaw []byte, u KernelUser, shell string) (workUser, error) {
	if u.UID < 0 || u.GID < 0 {
		return workUser{}, fmt.Errorf("negative ids %d:%d", u.UID, u.GID)
	}
	passwd, group := parseDB(passwdRaw, 7), parseDB(groupRaw, 4)
	uid, gid := strconv.Itoa(u.UID), strconv.Itoa(u.GID)

	if group.find(2, gid) < 0 {
		if n := group.find(0, "work"); n >= 0 {
			group.fields[n][2] = gid
		} else {
			group.add([]string{"work", "x", gid, ""})
		}
	}
	renamed := ""
	if n := passwd.find(2, uid); n < 0 {
		if n := passwd.find(0, "work"); n >= 0 {
			passwd.fields[n][2], passwd.fields[n][3] = uid, gid
		} else {
			passwd.add([]string{"work", "x", uid, gid, "User", "/home/work", shell})
		}
		if g := group.find(2, strconv.Itoa(grpreadGID)); g >= 0 {
			addMember(group.fields[g], "work")
		} else {
			group.add([]string{"grpread", "x", strconv.Itoa(grpreadGID), "work"})
		}
	} else if name := passwd.fields[n][0]; name != "work" {
		// usermod -l work: another "work" entry would clash with the rename.
		if w := passwd.find(0, "work"); w >= 0 {
			passwd.remove(w)
			if w < n {
				n--
			}
		}
		f := passwd.fields[n]
		f[0], f[3], f[5], f[6] = "work", gid, "/home/work", shell
		renamed = name
	} else {
		passwd.fields[n][3] = gid
	}
	if renamed != "" {
		for _, f := range group.fields {
			if f == nil {
				continue
			}
			members := strings.Split(f[3], ",")
			for i, m := range members {
				if m == renamed {
					members[i] = "work"
				}
			}
			f[3] = strings.Join(members, ",")
		}
	}
	if g := group.find(0, "shadow"); g >= 0 {
		addMember(group.fields[g], "work")
	}
	for _, ag := range u.AdditionalGIDs {
		s := strconv.Itoa(ag)
		if g := group.find(2, s); g >= 0 {
			addMember(group.fields[g], "work")
		} else {
			group.add([]string{"group" + s, "x", s, "work"})
		}
	}

	n := passwd.find(0, "work")
	if n < 0 || passwd.fields[n][2] != uid || passwd.fields[n][3] != gid {
		return workUser{}, fmt.Errorf("/etc/passwd entry for 'work' does not match %s:%s", uid, gid)
	}
	groups := []int{u.GID}
	addGroup := func(g int) {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range u.AdditionalGIDs {
		addGroup(g)
	}
	addGroup(shadowGID)
	for _, f := range group.fields {
		if f == nil || !slices.Contains(strings.Split(f[3], ","), "work") {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil {
			addGroup(g)
		}
	}
	return workUser{passwd: passwd.bytes(), group: group.bytes(), groups: groups}, nil
}

// userShell is the login shell upstream's entrypoint gives work.
func userShell(etcRoot string) string {
	for _, sh := range []string{"/bin/ash", "/bin/bash"} {
		if st, err := os.Stat(filepath.Join(etcRoot, sh)); err == nil && !st.IsDir() {
			return sh
		}
	}
	return "/bin/sh"
}

// SetupUser writes user work into root's /etc/passwd and /etc/group and
// returns the credential the kernel's processes run with; nil for uid 0,
// which upstream runs as root.
func SetupUser(root string, u KernelUser) (*syscall.Credential, error) {
	if u.UID == 0 {
		return nil, nil
	}
	passwdPath, groupPath := filepath.Join(root, "etc/passwd"), filepath.Join(root, "etc/group")
	passwdRaw, err := os.ReadFile(passwdPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read /etc/passwd: %w", err)
	}
	groupRaw, err := os.ReadFile(groupPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read /etc/group: %w", err)
	}
	wu, err := setupWorkUser(passwdRaw, groupRaw, u, userShell(root))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return nil, fmt.Errorf("make /etc: %w", err)
	}
	// In place, not renamed over: either file may be a bind mount.
	if err := os.WriteFile(passwdPath, wu.passwd, 0o644); err != nil {
		return nil, fmt.Errorf("write /etc/passwd: %w", err)
	}
	if err := os.WriteFile(groupPath, wu.group, 0o644); err != nil {
		return nil, fmt.Errorf("write /etc/group: %w", err)
	}
	return credential(u, wu.groups), nil
}

func credential(u KernelUser, groups []int) *syscall.Credential {
	c := &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}
	for _, g := range groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	return c
}

// procAttr is a child's SysProcAttr: a session of its own (no controlling
// terminal; see interpreter.launch), as the kernel user when there is one.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setsid: true}
	if cred != nil {
		c := *cred
		c.Groups = slices.Clone(cred.Groups)
		a.Credential = &c
	}
	return a
}

// chownTo gives path to the kernel user: what the root runner creates for
// the user's processes (code files, prestart files, ssh keys) must be
// theirs, as upstream's runner, running as the user, makes them.
func chownTo(cred *syscall.Credential, path string) error {
	if cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// mkdirAllAs is os.MkdirAll whose new directories the kernel user owns.
func mkdirAllAs(cred *syscall.Credential, path string) error {
	var missing []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(path, 0o777); err != nil {
		return err
	}
	for _, p := range slices.Backward(missing) {
		if err := chownTo(cred, p); err != nil {
			return err
		}
	}
	return nil
}
