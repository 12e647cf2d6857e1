package watcher

import (
	"strconv"
	"strings"
)

// FstabEntry is one fstab(5) line, written as upstream's Fstab does:
// "device mountpoint fstype options dump pass", options "defaults" when empty.
type FstabEntry struct {
	Device     string
	Mountpoint string
	FSType     string
	Options    string
	Dump, Pass int
}

func (e FstabEntry) String() string {
	opts := e.Options
	if opts == "" {
		opts = "defaults"
	}
	return strings.Join([]string{
		fstabEscape(e.Device), fstabEscape(e.Mountpoint), fstabEscape(e.FSType), fstabEscape(opts),
		strconv.Itoa(e.Dump), strconv.Itoa(e.Pass),
	}, " ")
}

// fstabFields splits a non-comment, non-blank line into its unescaped
// fields; ok is false for comments and blank lines.
func fstabFields(line string) (fields []string, ok bool) {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || strings.HasPrefix(trimmed, "#") {
		return nil, false
	}
	fields = strings.Fields(trimmed)
	for i, f := range fields {
		fields[i] = unescapeOctal(f)
	}
	return fields, true
}

// FstabAdd appends e unless an entry for the same device exists (upstream's
// rule), and says whether it changed the text.
func FstabAdd(text string, e FstabEntry) (string, bool) {
	for _, line := range strings.SplitAfter(text, "\n") {
		if fields, ok := fstabFields(line); ok && fields[0] == e.Device {
			return text, false
		}
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text + e.String() + "\n", true
}

// FstabRemoveByMountpoint deletes the first entry mounted at mountpoint, and
// says whether there was one. Comments and other lines are kept as they are.
func FstabRemoveByMountpoint(text, mountpoint string) (string, bool) {
	lines := strings.SplitAfter(text, "\n")
	for i, line := range lines {
		if fields, ok := fstabFields(line); ok && len(fields) >= 2 && fields[1] == mountpoint {
			return strings.Join(append(lines[:i:i], lines[i+1:]...), ""), true
		}
	}
	return text, false
}

// fstabEscape writes the characters fstab(5) and /proc/mounts escape as
// octal: space, tab, newline and backslash.
func fstabEscape(s string) string {
	if !strings.ContainsAny(s, " \t\n\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			b.WriteString("\\")
			b.WriteString(strconv.FormatInt(int64(c)|0o1000, 8)[1:])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeOctal undoes the \ooo escapes of fstab and /proc/mounts.
func unescapeOctal(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 16)
			if v <= 0xff {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
