package wiremsg

import (
	"errors"
	"fmt"
	"time"
)

// decodeTemporenc decodes the temporenc value Python's temporenc.packb writes
// for a datetime (ext 2): types D, T, DT, DTZ, DTS and DTSZ (temporenc.org).
// Missing components default to zero; a missing zone means UTC, as the
// agent's datetimes are UTC.
func decodeTemporenc(b []byte) (time.Time, error) {
	if len(b) == 0 {
		return time.Time{}, errors.New("temporenc: empty")
	}
	bits := &bitReader{data: b}
	var hasDate, hasTime, hasZone bool
	precision := uint64(3) // 3 = no sub-second part
	switch {
	case b[0]>>5 == 0b100 && len(b) == 3:
		bits.skip(3)
		hasDate = true
	case b[0]>>1 == 0b1010000 && len(b) == 3:
		bits.skip(7)
		hasTime = true
	case b[0]>>6 == 0b00 && len(b) == 5:
		bits.skip(2)
		hasDate, hasTime = true, true
	case b[0]>>5 == 0b110 && len(b) == 6:
		bits.skip(3)
		hasDate, hasTime, hasZone = true, true, true
	case b[0]>>6 == 0b01:
		bits.skip(2)
		precision = bits.read(2)
		hasDate, hasTime = true, true
		if len(b) != [4]int{7, 8, 9, 6}[precision] {
			return time.Time{}, fmt.Errorf("temporenc: DTS of %d bytes", len(b))
		}
	case b[0]>>5 == 0b111:
		bits.skip(3)
		precision = bits.read(2)
		hasDate, hasTime, hasZone = true, true, true
		if len(b) != [4]int{8, 9, 10, 7}[precision] {
			return time.Time{}, fmt.Errorf("temporenc: DTSZ of %d bytes", len(b))
		}
	default:
		return time.Time{}, fmt.Errorf("temporenc: unknown type tag 0x%02x with %d bytes", b[0], len(b))
	}

	year, month, day := 1970, 1, 1
	if hasDate {
		y, mo, d := bits.read(12), bits.read(4), bits.read(5)
		if y != 4095 {
			year = int(y)
		}
		if mo != 15 {
			month = int(mo) + 1
		}
		if d != 31 {
			day = int(d) + 1
		}
		if month > 12 {
			return time.Time{}, fmt.Errorf("temporenc: month %d", month)
		}
	}
	hour, minute, second := 0, 0, 0
	if hasTime {
		h, mi, s := bits.read(5), bits.read(6), bits.read(6)
		if h != 31 {
			hour = int(h)
		}
		if mi != 63 {
			minute = int(mi)
		}
		if s != 63 {
			second = int(s)
		}
		if hour > 23 || minute > 59 || second > 60 {
			return time.Time{}, fmt.Errorf("temporenc: time %02d:%02d:%02d", hour, minute, second)
		}
	}
	nanos := 0
	switch precision {
	case 0:
		nanos = int(bits.read(10)) * int(time.Millisecond)
	case 1:
		nanos = int(bits.read(20)) * int(time.Microsecond)
	case 2:
		nanos = int(bits.read(30))
	}
	if nanos >= int(time.Second) {
		return time.Time{}, fmt.Errorf("temporenc: sub-second part %d ns", nanos)
	}
	loc := time.UTC
	if hasZone {
		if z := bits.read(7); z != 127 {
			offset := (int(z) - 64) * 15 * 60
			if offset != 0 {
				loc = time.FixedZone("", offset)
			}
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, second, nanos, loc), nil
}

// bitReader reads big-endian bit fields; reads past the end yield zeros,
// which the length checks above rule out.
type bitReader struct {
	data []byte
	pos  int
}

func (r *bitReader) skip(n int) { r.pos += n }

func (r *bitReader) read(n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		var bit uint64
		if byteIdx := r.pos / 8; byteIdx < len(r.data) {
			bit = uint64(r.data[byteIdx]>>(7-uint(r.pos%8))) & 1
		}
		v = v<<1 | bit
		r.pos++
	}
	return v
}
