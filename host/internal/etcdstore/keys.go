package etcdstore

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// Upstream (common/etcd.py) quotes every component of a nested dict key with
// Python's urllib.parse.quote(safe=""), joins them with "/", and rebuilds the
// dict with make_dict_from_pairs, which unquotes each component with
// urllib.parse.unquote. The functions below reproduce both byte for byte so
// that keys written by either implementation read back the same in the other.

const upperHex = "0123456789ABCDEF"

// Quote percent-encodes every byte of s except the characters Python's
// quote(safe="") leaves alone: ASCII letters, digits and "_.-~".
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0f])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == '~'
}

// Unquote decodes %XX sequences the way Python's urllib.parse.unquote does:
// a "%" not followed by two hex digits stays as it is, and decoded bytes that
// are not valid UTF-8 become U+FFFD, one per maximal invalid subsequence
// (Python's "replace" error handler), while characters that were never
// percent-encoded pass through untouched.
func Unquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var out strings.Builder
	out.Grow(len(s))
	var pending []byte // an ASCII run with its escapes decoded, not yet UTF-8 checked
	flush := func() {
		writeReplacingInvalidUTF8(&out, pending)
		pending = pending[:0]
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			// Python only unquotes ASCII runs; non-ASCII text is copied as is
			// and ends the current run.
			flush()
			_, size := utf8.DecodeRuneInString(s[i:])
			out.WriteString(s[i : i+size])
			i += size
			continue
		}
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			pending = append(pending, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 3
			continue
		}
		pending = append(pending, c)
		i++
	}
	flush()
	return out.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// writeReplacingInvalidUTF8 writes b, replacing each maximal subpart of an
// ill-formed sequence with U+FFFD as Unicode (and CPython) recommend. Go's own
// decoder replaces byte by byte, which differs for truncated sequences.
func writeReplacingInvalidUTF8(out *strings.Builder, b []byte) {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out.WriteByte(b[i])
			i++
			continue
		}
		n := wellFormedPrefix(b[i:])
		if n > 0 {
			out.Write(b[i : i+n])
			i += n
			continue
		}
		out.WriteRune(utf8.RuneError)
		i += max(1, invalidSubpartLen(b[i:]))
	}
}

// leadRange returns, for a lead byte, the sequence length and the allowed
// range of the second byte (Unicode Table 3-7); length 0 means invalid lead.
func leadRange(lead byte) (length int, lo, hi byte) {
	switch {
	case 0xC2 <= lead && lead <= 0xDF:
		return 2, 0x80, 0xBF
	case lead == 0xE0:
		return 3, 0xA0, 0xBF
	case 0xE1 <= lead && lead <= 0xEC, lead == 0xEE, lead == 0xEF:
		return 3, 0x80, 0xBF
	case lead == 0xED:
		return 3, 0x80, 0x9F
	case lead == 0xF0:
		return 4, 0x90, 0xBF
	case 0xF1 <= lead && lead <= 0xF3:
		return 4, 0x80, 0xBF
	case lead == 0xF4:
		return 4, 0x80, 0x8F
	default:
		return 0, 0, 0
	}
}

// wellFormedPrefix returns the length of the complete character at b[0], or 0.
func wellFormedPrefix(b []byte) int {
	n := invalidSubpartLen(b)
	length, _, _ := leadRange(b[0])
	if length > 0 && n == length {
		return n
	}
	return 0
}

// invalidSubpartLen returns how many bytes from b[0] form a valid (possibly
// truncated) prefix of a UTF-8 sequence.
func invalidSubpartLen(b []byte) int {
	length, lo, hi := leadRange(b[0])
	if length == 0 {
		return 1
	}
	n := 1
	for n < length && n < len(b) {
		c := b[n]
		if n == 1 && (c < lo || c > hi) || n > 1 && (c < 0x80 || c > 0xBF) {
			break
		}
		n++
	}
	return n
}

// Pair is one etcd key (with the namespace stripped) and its value.
type Pair struct {
	Key   string
	Value string
}

// MakeDictFromPairs rebuilds a nested dict from flattened pairs exactly as
// upstream's make_dict_from_pairs: keys not starting with keyPrefix are
// skipped; one leading "/" after the prefix is dropped; each "/"-separated
// component is unquoted; a value that is also a parent becomes the "" entry
// of its dict; and a later leaf replaces whatever its name held. Pairs must
// be in the order etcd returns them (sorted by key), as upstream relies on it.
// Values are string or map[string]any.
func MakeDictFromPairs(keyPrefix string, pairs []Pair) map[string]any {
	result := map[string]any{}
	for _, p := range pairs {
		if !strings.HasPrefix(p.Key, keyPrefix) {
			continue
		}
		subkey := strings.TrimPrefix(p.Key[len(keyPrefix):], "/")
		components := strings.Split(subkey, "/")
		parent := result
		for _, raw := range components[:len(components)-1] {
			name := Unquote(raw)
			switch existing := parent[name].(type) {
			case map[string]any:
				parent = existing
			case nil:
				child := map[string]any{}
				parent[name] = child
				parent = child
			default:
				child := map[string]any{"": existing}
				parent[name] = child
				parent = child
			}
		}
		parent[Unquote(components[len(components)-1])] = p.Value
	}
	return result
}

// Flatten turns a nested dict into flattened, quoted keys under keyPrefix as
// upstream's put_prefix does: a "" key names the prefix itself. Leaves may be
// strings or anything fmt-printable by the caller beforehand; only
// map[string]any recurses.
func Flatten(keyPrefix string, tree map[string]any) map[string]string {
	out := map[string]string{}
	flattenInto(out, keyPrefix, tree)
	return out
}

func flattenInto(out map[string]string, keyPrefix string, tree map[string]any) {
	names := make([]string, 0, len(tree))
	for name := range tree {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := keyPrefix
		if name != "" {
			key = keyPrefix + "/" + Quote(name)
		}
		switch v := tree[name].(type) {
		case map[string]any:
			flattenInto(out, key, v)
		default:
			out[key] = leafString(v)
		}
	}
}
