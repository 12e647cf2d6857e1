package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// ErrFull is returned by Append when the queue holds MaxBytes already.
var ErrFull = errors.New("spool: queue is full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool: queue is closed")

// Defaults for Options left zero.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultSegmentBytes = 4 << 20
)

const (
	segmentPrefix = "seg-"
	segmentSuffix = ".log"
	cursorName    = "cursor"
	cursorSize    = 20 // segment uint64, offset uint64, crc32
)

// Options configures a Queue.
type Options struct {
	// Dir holds the segment and cursor files; it is created if missing.
	Dir string
	// MaxBytes bounds the undelivered records, framing included.
	MaxBytes int64
	// SegmentBytes is the size after which appends go to a new segment.
	SegmentBytes int64
	Logger       zerolog.Logger
}

type pendingRecord struct {
	segment uint64
	end     int64
	payload []byte
}

// Queue is a durable FIFO of byte records. It is safe for concurrent use.
// Undelivered records are also kept in memory (they are bounded by MaxBytes),
// so Peek never touches the disk.
type Queue struct {
	opts Options

	mu            sync.Mutex
	pending       []pendingRecord
	pendingBytes  int64
	activeSegment uint64
	activeFile    *os.File
	activeSize    int64
	closed        bool
}

// Open reads the queue in opts.Dir back, cutting off a torn record at the
// end of a segment, and returns it ready for appends.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", opts.Dir, err)
	}
	q := &Queue{opts: opts}
	segments, err := q.listSegments()
	if err != nil {
		return nil, err
	}
	cursorSegment, cursorOffset := q.readCursor(segments)
	for i, segment := range segments {
		path := q.segmentPath(segment)
		if segment < cursorSegment {
			// Every record in it was delivered before the last shutdown.
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("spool: remove delivered segment: %w", err)
			}
			continue
		}
		start := int64(0)
		if segment == cursorSegment {
			start = cursorOffset
		}
		if err := q.loadSegment(path, segment, start, i == len(segments)-1); err != nil {
			return nil, err
		}
	}
	next := uint64(1)
	if len(segments) > 0 {
		next = segments[len(segments)-1]
	}
	if err := q.openActive(next); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Queue) segmentPath(segment uint64) string {
	return filepath.Join(q.opts.Dir, fmt.Sprintf("%s%016d%s", segmentPrefix, segment, segmentSuffix))
}

func (q *Queue) listSegments() ([]uint64, error) {
	entries, err := os.ReadDir(q.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", q.opts.Dir, err)
	}
	var segments []uint64
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil || n == 0 {
			continue
		}
		segments = append(segments, n)
	}
	sort.Slice(segments, func(i, j int) bool { return segments[i] < segments[j] })
	return segments, nil
}

// readCursor returns where delivery resumes. A missing or damaged cursor
// resumes at the oldest segment: records may be delivered twice, never lost.
func (q *Queue) readCursor(segments []uint64) (uint64, int64) {
	oldest := uint64(0)
	if len(segments) > 0 {
		oldest = segments[0]
	}
	data, err := os.ReadFile(filepath.Join(q.opts.Dir, cursorName))
	if errors.Is(err, fs.ErrNotExist) {
		return oldest, 0
	}
	if err != nil || len(data) != cursorSize ||
		binary.LittleEndian.Uint32(data[16:20]) != crc32.Checksum(data[:16], castagnoli) {
		q.opts.Logger.Warn().Err(err).Str("dir", q.opts.Dir).
			Msg("event queue cursor unreadable; redelivering from the oldest segment")
		return oldest, 0
	}
	return binary.LittleEndian.Uint64(data[0:8]), int64(binary.LittleEndian.Uint64(data[8:16]))
}

// loadSegment reads the undelivered records of one segment into memory.
func (q *Queue) loadSegment(path string, segment uint64, start int64, isLast bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", path, err)
	}
	if start > int64(len(data)) {
		q.opts.Logger.Warn().Str("segment", path).Int64("cursor", start).Int("size", len(data)).
			Msg("event queue cursor beyond segment end; redelivering the segment")
		start = 0
	}
	records, validEnd, decodeErr := DecodeSegment(data, start)
	if decodeErr != nil {
		q.opts.Logger.Warn().Err(decodeErr).Str("segment", path).Int64("kept_bytes", validEnd).
			Msg("event queue segment ends in a torn record; dropping the torn tail")
		if isLast {
			// Cut the tail so that new appends follow the last intact record.
			if err := os.Truncate(path, validEnd); err != nil {
				return fmt.Errorf("spool: truncate torn tail of %s: %w", path, err)
			}
		}
	}
	for _, r := range records {
		payload := append([]byte(nil), r.Payload...)
		q.pending = append(q.pending, pendingRecord{segment: segment, end: r.End, payload: payload})
		q.pendingBytes += recordHeaderSize + int64(len(payload))
	}
	return nil
}

func (q *Queue) openActive(segment uint64) error {
	path := q.segmentPath(segment)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: open segment: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: stat segment: %w", err)
	}
	if info.Size() == 0 {
		// Make the new file's name durable along with its records.
		if err := syncDir(q.opts.Dir); err != nil {
			_ = f.Close()
			return err
		}
	}
	q.activeSegment, q.activeFile, q.activeSize = segment, f, info.Size()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	return nil
}

// Append writes one record at the tail and fsyncs it before returning, so
// that an accepted record survives a crash of the process or the machine.
func (q *Queue) Append(payload []byte) error {
	frame, err := EncodeRecord(payload)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if q.pendingBytes+int64(len(frame)) > q.opts.MaxBytes {
		return fmt.Errorf("%w (%d bytes pending, limit %d)", ErrFull, q.pendingBytes, q.opts.MaxBytes)
	}
	if q.activeSize > 0 && q.activeSize+int64(len(frame)) > q.opts.SegmentBytes {
		if err := q.rollSegment(); err != nil {
			return err
		}
	}
	if _, err := q.activeFile.Write(frame); err != nil {
		// A partial write leaves a torn tail that the next Open cuts off;
		// cut it now so that later records stay readable.
		_ = q.activeFile.Truncate(q.activeSize)
		return fmt.Errorf("spool: append: %w", err)
	}
	if err := q.activeFile.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	q.activeSize += int64(len(frame))
	q.pending = append(q.pending, pendingRecord{segment: q.activeSegment, end: q.activeSize, payload: append([]byte(nil), payload...)})
	q.pendingBytes += int64(len(frame))
	return nil
}

func (q *Queue) rollSegment() error {
	if err := q.activeFile.Close(); err != nil {
		return fmt.Errorf("spool: close segment: %w", err)
	}
	done := q.activeSegment
	if err := q.openActive(done + 1); err != nil {
		return err
	}
	if !q.segmentHasPending(done) {
		q.removeSegment(done)
	}
	return nil
}

func (q *Queue) segmentHasPending(segment uint64) bool {
	for _, r := range q.pending {
		if r.segment == segment {
			return true
		}
	}
	return false
}

func (q *Queue) removeSegment(segment uint64) {
	if err := os.Remove(q.segmentPath(segment)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.opts.Logger.Warn().Err(err).Uint64("segment", segment).Msg("cannot remove delivered event queue segment")
	}
}

// Peek returns the oldest undelivered record, or ok=false when there is none.
func (q *Queue) Peek() (payload []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return nil, false
	}
	return q.pending[0].payload, true
}

// Pop marks the oldest record delivered and records that in the cursor.
// The cursor is replaced by rename without fsync: after a power loss the
// worst case is a record delivered twice.
func (q *Queue) Pop() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if len(q.pending) == 0 {
		return errors.New("spool: pop from an empty queue")
	}
	head := q.pending[0]
	if err := q.writeCursor(head.segment, head.end); err != nil {
		return err
	}
	q.pending[0] = pendingRecord{}
	q.pending = q.pending[1:]
	q.pendingBytes -= recordHeaderSize + int64(len(head.payload))
	if head.segment != q.activeSegment && !q.segmentHasPending(head.segment) {
		q.removeSegment(head.segment)
	}
	return nil
}

func (q *Queue) writeCursor(segment uint64, offset int64) error {
	var data [cursorSize]byte
	binary.LittleEndian.PutUint64(data[0:8], segment)
	binary.LittleEndian.PutUint64(data[8:16], uint64(offset))
	binary.LittleEndian.PutUint32(data[16:20], crc32.Checksum(data[:16], castagnoli))
	tmp := filepath.Join(q.opts.Dir, cursorName+".tmp")
	if err := os.WriteFile(tmp, data[:], 0o600); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(q.opts.Dir, cursorName)); err != nil {
		return fmt.Errorf("spool: replace cursor: %w", err)
	}
	return nil
}

// Len is the number of undelivered records.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Bytes is the size of the undelivered records, framing included.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pendingBytes
}

// Close releases the active segment; the records stay on disk.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if err := q.activeFile.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
