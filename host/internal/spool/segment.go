// Package spool is a bounded, ordered, on-disk queue of byte records that
// survives a restart of the process: events that could not be delivered are
// appended here and handed out again, oldest first, until they are popped.
//
// Records live in append-only segment files. Each record is framed as
//
//	uint32 LE payload length | uint32 LE CRC-32C over (length, payload) | payload
//
// so that a record torn by a crash mid-write (short, or with garbage in it)
// is detected when the segment is read back; the torn tail is cut off and
// everything before it is kept. A small cursor file names the first record
// not yet delivered. Delivery is at least once: a crash between delivering a
// record and recording that in the cursor delivers it again.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// recordHeaderSize is the length and checksum in front of every payload.
const recordHeaderSize = 8

// MaxRecordSize bounds one payload, so that a corrupt length never makes the
// reader allocate or skip gigabytes.
const MaxRecordSize = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTornRecord reports bytes at the end of a segment that do not form a
// whole, intact record.
var ErrTornRecord = errors.New("spool: torn or corrupt record")

// EncodeRecord frames one payload.
func EncodeRecord(payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, errors.New("spool: empty record")
	}
	if len(payload) > MaxRecordSize {
		return nil, fmt.Errorf("spool: record of %d bytes exceeds %d", len(payload), MaxRecordSize)
	}
	out := make([]byte, recordHeaderSize, recordHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(out[0:4], uint32(len(payload)))
	out = append(out, payload...)
	binary.LittleEndian.PutUint32(out[4:8], recordChecksum(out[0:4], payload))
	return out, nil
}

func recordChecksum(lengthBytes, payload []byte) uint32 {
	sum := crc32.Update(0, castagnoli, lengthBytes)
	return crc32.Update(sum, castagnoli, payload)
}

// Record is one decoded record and where it ends in its segment.
type Record struct {
	Payload []byte
	// End is the offset just past the record, the cursor after popping it.
	End int64
}

// DecodeSegment reads the records of one segment, starting at offset start.
// It returns the intact records and the length of the valid prefix; when
// bytes after that prefix do not form an intact record, err is
// ErrTornRecord (wrapped with the offset) and the records before it are
// still returned.
func DecodeSegment(data []byte, start int64) (records []Record, validEnd int64, err error) {
	if start < 0 || start > int64(len(data)) {
		return nil, 0, fmt.Errorf("spool: start offset %d outside segment of %d bytes", start, len(data))
	}
	pos := start
	for pos < int64(len(data)) {
		rest := data[pos:]
		if len(rest) < recordHeaderSize {
			return records, pos, fmt.Errorf("%w at offset %d: %d bytes of header", ErrTornRecord, pos, len(rest))
		}
		length := binary.LittleEndian.Uint32(rest[0:4])
		if length == 0 || length > MaxRecordSize {
			return records, pos, fmt.Errorf("%w at offset %d: length %d", ErrTornRecord, pos, length)
		}
		if int64(len(rest)-recordHeaderSize) < int64(length) {
			return records, pos, fmt.Errorf("%w at offset %d: %d of %d payload bytes", ErrTornRecord, pos, len(rest)-recordHeaderSize, length)
		}
		payload := rest[recordHeaderSize : recordHeaderSize+int(length)]
		if binary.LittleEndian.Uint32(rest[4:8]) != recordChecksum(rest[0:4], payload) {
			return records, pos, fmt.Errorf("%w at offset %d: checksum mismatch", ErrTornRecord, pos)
		}
		pos += recordHeaderSize + int64(length)
		records = append(records, Record{Payload: payload, End: pos})
	}
	return records, pos, nil
}
