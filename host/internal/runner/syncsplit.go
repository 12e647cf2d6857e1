package runner

import "bytes"

// syncSplitter finds sync markers in an interpreter's output stream. The
// interpreter prints a marker on stdout and on stderr after each run, so
// that the runner knows every byte the run wrote has been forwarded before
// it reports the run finished. Markers are cut out; everything else is
// passed on unchanged and in order.
type syncSplitter struct {
	marker  []byte
	pending []byte // a tail that may be the start of a marker
}

func newSyncSplitter(marker []byte) *syncSplitter {
	return &syncSplitter{marker: marker}
}

// Feed consumes one chunk, calling onData for output and onSync for each
// marker, in stream order.
func (s *syncSplitter) Feed(chunk []byte, onData func([]byte), onSync func()) {
	buf := append(s.pending, chunk...)
	s.pending = nil
	for {
		i := bytes.Index(buf, s.marker)
		if i < 0 {
			break
		}
		if i > 0 {
			onData(buf[:i])
		}
		onSync()
		buf = buf[i+len(s.marker):]
	}
	keep := s.partialMarkerSuffix(buf)
	if len(buf)-keep > 0 {
		onData(buf[:len(buf)-keep])
	}
	if keep > 0 {
		s.pending = append([]byte(nil), buf[len(buf)-keep:]...)
	}
}

// Flush passes on a held-back tail at end of stream.
func (s *syncSplitter) Flush(onData func([]byte)) {
	if len(s.pending) > 0 {
		onData(s.pending)
		s.pending = nil
	}
}

// partialMarkerSuffix is the length of the longest suffix of buf that is a
// proper prefix of the marker.
func (s *syncSplitter) partialMarkerSuffix(buf []byte) int {
	longest := min(len(buf), len(s.marker)-1)
	for n := longest; n > 0; n-- {
		if bytes.Equal(buf[len(buf)-n:], s.marker[:n]) {
			return n
		}
	}
	return 0
}
