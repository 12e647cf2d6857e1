// Package sysfsfixture unpacks the text archives under the plugins'
// testdata/ into real directory trees. The archives hold sysfs and /dev trees whose names
// contain ':', which Go module zips do not allow as file names.
//
// Format: text before the first marker is a comment; "-- path --" starts a
// regular file whose content runs to the next marker; "-- path -> target --"
// is a symbolic link with no content.
package sysfsfixture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Entry is one file or link of an archive.
type Entry struct {
	Path string
	// Link is the target of a symbolic link; empty for a regular file.
	Link string
	Data []byte
}

// Parse reads an archive.
func Parse(data []byte) ([]Entry, error) {
	var entries []Entry
	var cur *Entry
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		text := strings.TrimRight(string(line), "\n")
		if strings.HasPrefix(text, "-- ") && strings.HasSuffix(text, " --") && len(text) > 6 {
			name := text[3 : len(text)-3]
			e := Entry{Path: name}
			if path, target, ok := strings.Cut(name, " -> "); ok {
				e.Path, e.Link = path, target
			}
			if err := checkPath(e.Path); err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			entries = append(entries, e)
			cur = &entries[len(entries)-1]
			continue
		}
		if cur == nil {
			continue // comment
		}
		if cur.Link != "" {
			if strings.TrimSpace(text) != "" {
				return nil, fmt.Errorf("line %d: link %s has content", lineNo, cur.Path)
			}
			continue
		}
		cur.Data = append(cur.Data, line...)
	}
	return entries, nil
}

func checkPath(p string) error {
	if p == "" || filepath.IsAbs(p) || p != filepath.Clean(p) || strings.HasPrefix(p, "..") {
		return fmt.Errorf("bad path %q", p)
	}
	return nil
}

// Extract unpacks the archive file into dir, which must exist.
func Extract(archive, dir string) error {
	data, err := os.ReadFile(archive)
	if err != nil {
		return err
	}
	entries, err := Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	for _, e := range entries {
		dst := filepath.Join(dir, e.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if e.Link != "" {
			err = os.Symlink(e.Link, dst)
		} else {
			err = os.WriteFile(dst, e.Data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
	}
	return nil
}

// ExtractTemp unpacks archive into a fresh temporary directory of t and
// returns the directory.
func ExtractTemp(t testing.TB, archive string) string {
	t.Helper()
	dir := t.TempDir()
	if err := Extract(archive, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
