package kernel_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/baiagent/baiagent/host/internal/kernel"
)

// TestWorkFilesRefuseSymlinkSwappedAfterCheck races the file methods
// against a kernel that keeps swapping a directory of its /home/work for a
// symlink to a host directory (rename is atomic, so every lookup sees one
// or the other). A path checked while it was the directory must not be
// written, read or listed through the symlink a moment later.
func TestWorkFilesRefuseSymlinkSwappedAfterCheck(t *testing.T) {
	base := t.TempDir()
	work := filepath.Join(base, "work")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(work, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "host-only-marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "sub", "secret"), []byte("work file"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The kernel's side: exchange work/sub with a symlink to the host
	// directory, over and over (renameat2 RENAME_EXCHANGE swaps a directory
	// and a symlink atomically).
	link := filepath.Join(work, ".link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, filepath.Join(work, "sub"), unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange: %v", err)
				return
			}
		}
	}()
	w := kernel.WorkDir{Path: work, UID: -1, GID: -1}
	uploaded := 0
	for i := 0; i < 3000; i++ {
		if w.Upload("sub/planted", []byte("x")) == nil {
			uploaded++
		}
		if data, err := w.DownloadSingle("sub/secret"); err == nil && string(data) == "host secret" {
			t.Errorf("iteration %d: download_single read a host file through a swapped symlink", i)
			break
		}
		if l, err := w.List("sub"); err == nil && strings.Contains(l.Files, "host-only-marker") {
			t.Errorf("iteration %d: list_files listed a host directory through a swapped symlink", i)
			break
		}
	}
	close(stop)
	wg.Wait()
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Fatal("upload_file wrote into a host directory through a symlink swapped in after the check")
	}
	if uploaded == 0 {
		t.Fatal("no upload succeeded: the race was never entered")
	}
}
