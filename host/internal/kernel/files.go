package kernel

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ContainerWorkDir is where a kernel's work directory is mounted.
const ContainerWorkDir = "/home/work"

// MaxDownloadSize bounds download_file's archive and download_single's
// file, as upstream (1 MiB).
const MaxDownloadSize = 1 << 20

// maxSymlinks bounds symlink resolution, as the kernel's MAXSYMLINKS.
const maxSymlinks = 40

var (
	// ErrOutsideWork marks a path that leaves /home/work (upstream's
	// PermissionError).
	ErrOutsideWork = errors.New("not allowed to access files outside /home/work")
	// ErrTooLarge marks a download over MaxDownloadSize (upstream's
	// ValueError).
	ErrTooLarge = errors.New("too large")
	// ErrNotSingleFile marks download_single of something that is not a
	// regular file (upstream's ValueError).
	ErrNotSingleFile = errors.New("expected a single file")
)

// ResolveWorkPath maps a path as the kernel sees it (absolute under
// /home/work, or relative to it) onto the host work directory root,
// resolving symlinks as the container would: every component is checked
// with Lstat, and a symlink target (absolute ones in the container's
// namespace) must stay under /home/work. Components that do not exist
// yet are appended as they are. The result has no symlinks at the time
// of the check.
func ResolveWorkPath(root, p string) (string, error) {
	rel, err := workRel(p)
	if err != nil {
		return "", err
	}
	// pending holds the components still to walk; done the resolved ones.
	pending := splitRel(rel)
	var done []string
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		host := filepath.Join(root, filepath.Join(done...), name)
		st, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// The rest does not exist: no symlinks to follow there.
				done = append(done, name)
				done = append(done, pending...)
				break
			}
			return "", fmt.Errorf("%s: %w", p, err)
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, name)
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		var full string
		if path.IsAbs(target) {
			full = path.Clean(target)
		} else {
			full = path.Join(ContainerWorkDir, path.Join(done...), target)
		}
		trel, ok := underWork(full)
		if !ok {
			return "", fmt.Errorf("%w: %s (a symlink points to %s)", ErrOutsideWork, p, target)
		}
		pending = append(splitRel(trel), pending...)
		done = nil
	}
	return filepath.Join(root, filepath.Join(done...)), nil
}

// workRel returns p relative to /home/work, cleaned; "" is /home/work.
func workRel(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: %q has a NUL byte", ErrOutsideWork, p)
	}
	full := p
	if !path.IsAbs(p) {
		full = ContainerWorkDir + "/" + p
	}
	rel, ok := underWork(path.Clean(full))
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrOutsideWork, p)
	}
	return rel, nil
}

// underWork reports a clean absolute container path's part below
// /home/work.
func underWork(clean string) (string, bool) {
	if clean == ContainerWorkDir {
		return "", true
	}
	rest, ok := strings.CutPrefix(clean, ContainerWorkDir+"/")
	return rest, ok
}

func splitRel(rel string) []string {
	if rel == "" {
		return nil
	}
	return strings.Split(rel, "/")
}

// WorkDir is a kernel's work directory on the host: its /home/work.
type WorkDir struct {
	Path string
	// UID and GID own what an upload creates when the agent runs as root;
	// -1 leaves the owner as it is.
	UID, GID int
}

func (m *Manager) work(kernelID string) (WorkDir, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.reg[kernelID]
	if !ok {
		return WorkDir{}, fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	return WorkDir{Path: k.dirs.Work, UID: k.uid, GID: k.gid}, nil
}

// open checks p with ResolveWorkPath, for a clear error naming what
// escapes, and opens the work dir as an os.Root for the operation itself:
// the kernel can swap a checked directory for a symlink before the agent
// uses the path, and every lookup through the root refuses to leave it
// (openat2 RESOLVE_IN_ROOT semantics, which a path string cannot give).
// rel is the checked path relative to the root ("." for the root).
func (w WorkDir) open(p string) (root *os.Root, rel string, err error) {
	host, err := ResolveWorkPath(w.Path, p)
	if err != nil {
		return nil, "", err
	}
	if rel, err = filepath.Rel(w.Path, host); err != nil {
		return nil, "", fmt.Errorf("%s: %w", p, err)
	}
	if root, err = os.OpenRoot(w.Path); err != nil {
		return nil, "", fmt.Errorf("open the work directory: %w", err)
	}
	return root, rel, nil
}

// UploadFile writes data to filename under the kernel's /home/work (see
// WorkDir.Upload).
func (m *Manager) UploadFile(kernelID, filename string, data []byte) error {
	w, err := m.work(kernelID)
	if err != nil {
		return err
	}
	return w.Upload(filename, data)
}

// Upload writes data to filename, creating missing parent directories.
func (w WorkDir) Upload(filename string, data []byte) error {
	root, rel, err := w.open(filename)
	if err != nil {
		return err
	}
	defer root.Close()
	if rel == "." {
		return fmt.Errorf("upload %s: is the work directory itself", filename)
	}
	if err := w.mkdirParents(root, filepath.Dir(rel)); err != nil {
		return fmt.Errorf("upload %s: %w", filename, err)
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("upload %s: %w", filename, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, w.chown(root, rel)); err != nil {
		return fmt.Errorf("upload %s: %w", filename, err)
	}
	return nil
}

// mkdirParents creates dir and its missing parents inside root.
func (w WorkDir) mkdirParents(root *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	if st, err := root.Lstat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := w.mkdirParents(root, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := root.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return w.chown(root, dir)
}

func (w WorkDir) chown(root *os.Root, rel string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return root.Lchown(rel, w.UID, w.GID)
}

// DownloadFile returns a tar archive of a path in the kernel's /home/work
// (see WorkDir.DownloadArchive).
func (m *Manager) DownloadFile(kernelID, p string) ([]byte, error) {
	w, err := m.work(kernelID)
	if err != nil {
		return nil, err
	}
	return w.DownloadArchive(p)
}

// DownloadArchive returns a tar archive of p (a file or a directory, one
// top entry named after it, as Docker's get_archive); archives over
// MaxDownloadSize are refused.
func (w WorkDir) DownloadArchive(p string) ([]byte, error) {
	root, rel, err := w.open(p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	buf := &limitedBuffer{limit: MaxDownloadSize}
	tw := tar.NewWriter(buf)
	base := filepath.Base(filepath.Join(w.Path, rel))
	top := filepath.ToSlash(rel)
	werr := fs.WalkDir(root.FS(), top, func(cur string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Through the root, not d.Info(): a DirEntry stats by path string.
		info, err := root.Lstat(cur)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(cur); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		sub, err := filepath.Rel(top, cur)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(filepath.Join(base, sub))
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := root.OpenFile(cur, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if werr == nil {
		werr = tw.Close()
	}
	switch {
	case errors.Is(werr, ErrTooLarge):
		return nil, fmt.Errorf("%w: archive of %s exceeds 1 MiB (Too large archive file exceeding 1 MiB)", ErrTooLarge, p)
	case werr != nil:
		return nil, fmt.Errorf("could not download the archive of %s: %w", p, werr)
	}
	return buf.Bytes(), nil
}

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, ErrTooLarge
	}
	return b.Buffer.Write(p)
}

// DownloadSingle returns the bytes of one regular file in the kernel's
// /home/work (see WorkDir.DownloadSingle).
func (m *Manager) DownloadSingle(kernelID, p string) ([]byte, error) {
	w, err := m.work(kernelID)
	if err != nil {
		return nil, err
	}
	return w.DownloadSingle(p)
}

// DownloadSingle returns the bytes of one regular file; files over
// MaxDownloadSize are refused.
func (w WorkDir) DownloadSingle(p string) ([]byte, error) {
	root, rel, err := w.open(p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("could not download %s: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("could not download %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotSingleFile, p)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxDownloadSize+1))
	if err != nil {
		return nil, fmt.Errorf("could not download %s: %w", p, err)
	}
	if len(data) > MaxDownloadSize {
		return nil, fmt.Errorf("%w: %s exceeds 1 MiB (Too large file exceeding 1 MiB)", ErrTooLarge, p)
	}
	return data, nil
}

// FileListing is list_files' answer: Files is a JSON list of
// {mode, size, ctime, mtime, atime, filename}, Errors what went wrong
// reading the directory (upstream's stderr), Abspath the path as given.
type FileListing struct {
	Files   string
	Errors  string
	Abspath string
}

type fileEntry struct {
	Mode     string  `json:"mode"`
	Size     int64   `json:"size"`
	Ctime    float64 `json:"ctime"`
	Mtime    float64 `json:"mtime"`
	Atime    float64 `json:"atime"`
	Filename string  `json:"filename"`
}

// ListFiles lists a directory in the kernel's /home/work (see
// WorkDir.List).
func (m *Manager) ListFiles(kernelID, p string) (FileListing, error) {
	w, err := m.work(kernelID)
	if err != nil {
		return FileListing{}, err
	}
	return w.List(p)
}

// List lists a directory without following its entries' symlinks.
func (w WorkDir) List(p string) (FileListing, error) {
	root, rel, err := w.open(p)
	if err != nil {
		return FileListing{}, err
	}
	defer root.Close()
	out := FileListing{Abspath: p}
	dir, err := root.Open(rel)
	if err != nil {
		out.Errors = fmt.Sprintf("list %s: %v\n", p, err)
		return out, nil
	}
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		out.Errors = fmt.Sprintf("list %s: %v\n", p, err)
		return out, nil
	}
	files := make([]fileEntry, 0, len(ents))
	for _, e := range ents {
		// Through the root, not e.Info(): a DirEntry stats by path string.
		info, err := root.Lstat(filepath.Join(rel, e.Name()))
		if err != nil {
			out.Errors += fmt.Sprintf("%s: %v\n", e.Name(), err)
			continue
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			out.Errors += fmt.Sprintf("%s: no stat data\n", e.Name())
			continue
		}
		files = append(files, fileEntry{
			Mode: fileMode(st.Mode), Size: st.Size,
			Ctime: secs(st.Ctim), Mtime: secs(st.Mtim), Atime: secs(st.Atim),
			Filename: e.Name(),
		})
	}
	data, err := json.Marshal(files)
	if err != nil {
		return FileListing{}, err
	}
	out.Files = string(data)
	return out, nil
}

func secs(ts syscall.Timespec) float64 { return float64(ts.Sec) + float64(ts.Nsec)/1e9 }

// fileMode renders st_mode as Python's stat.filemode does.
func fileMode(mode uint32) string {
	b := []byte("?---------")
	switch mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		b[0] = 'l'
	case syscall.S_IFSOCK:
		b[0] = 's'
	case syscall.S_IFREG:
		b[0] = '-'
	case syscall.S_IFBLK:
		b[0] = 'b'
	case syscall.S_IFDIR:
		b[0] = 'd'
	case syscall.S_IFCHR:
		b[0] = 'c'
	case syscall.S_IFIFO:
		b[0] = 'p'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if mode&(1<<(8-i)) != 0 {
			b[1+i] = rwx[i]
		}
	}
	special := func(bit uint32, pos int, set, unset byte) {
		if mode&bit == 0 {
			return
		}
		if b[pos] == 'x' {
			b[pos] = set
		} else {
			b[pos] = unset
		}
	}
	special(syscall.S_ISUID, 3, 's', 'S')
	special(syscall.S_ISGID, 6, 's', 'S')
	special(syscall.S_ISVTX, 9, 't', 'T')
	return string(b)
}
