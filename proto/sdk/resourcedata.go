package sdk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// resource.txt is the KEY=VALUE file the agent writes into a kernel's config
// dir (upstream KernelResourceSpec.write_to_string). It is the only record of
// which devices a running container was given, so restore reads it back:
//
//	CPU_SHARES=0:1,1:1
//	MEM_SHARES=root:4g
//	CUDA.DEVICE_SHARES=0:1
//	CUDA.DEVICE:1G.5GB-MIG_SHARES=MIG-xxx/1/0:1

// sharesSuffix ends every allocation line; the rest of the key is the slot
// name upper-cased.
const sharesSuffix = "_SHARES"

// maxResourceDataLine bounds one line. MOUNTS lines grow with vfolders, so
// the limit is generous, but a file of garbage must not take all memory.
const maxResourceDataLine = 1 << 20

// Amounts beyond these bounds are not resource amounts but corrupt data; the
// bounds keep big-number arithmetic on such input cheap.
const (
	maxAmountIntegerDigits = 40
	maxAmountFractionDigit = 40
)

// ParseResourceData reads resource.txt. It follows upstream's
// read_from_string: each line is trimmed and split at its first '='; lines
// without '=' (blank lines included) are skipped; a later key overrides an
// earlier one. Unlike upstream it rejects lines that are not UTF-8, lines
// with an empty key and overlong lines, naming the line number.
func ParseResourceData(r io.Reader) (map[string]string, error) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 0, 4096), maxResourceDataLine)
	data := map[string]string{}
	lineNo := 0
	for scanner.Scan() {
		lineNo++
		raw := scanner.Bytes()
		if !utf8.Valid(raw) {
			return nil, fmt.Errorf("resource data line %d: not valid UTF-8", lineNo)
		}
		line := strings.TrimSpace(string(raw))
		key, value, found := strings.Cut(line, "=")
		if !found {
			continue
		}
		if key == "" {
			return nil, fmt.Errorf("resource data line %d: empty key before '='", lineNo)
		}
		data[key] = value
	}
	if err := scanner.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("resource data line %d: longer than %d bytes: %w", lineNo+1, maxResourceDataLine, err)
		}
		return nil, fmt.Errorf("resource data line %d: %w", lineNo+1, err)
	}
	return data, nil
}

// WriteResourceData writes data as KEY=VALUE lines sorted by key, so the
// same data always gives the same file. A key or value that could not be
// read back the same way is an error.
func WriteResourceData(w io.Writer, data map[string]string) error {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		v := data[k]
		switch {
		case k == "" || k != strings.TrimSpace(k):
			return fmt.Errorf("resource data key %q: empty or padded with spaces", k)
		case strings.ContainsAny(k, "=\r\n"):
			return fmt.Errorf("resource data key %q: contains '=' or a line break", k)
		case strings.ContainsAny(v, "\r\n") || v != strings.TrimRightFunc(v, isSpace):
			return fmt.Errorf("resource data key %q: value contains a line break or trailing space", k)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fmt.Errorf("resource data key %q: not valid UTF-8", k)
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write resource data: %w", err)
	}
	return nil
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }

// AllocationFromResourceData reads the <SLOT>_SHARES lines whose slot
// belongs to one of kinds (a nil kinds means every kind). The slot is the
// key before "_SHARES", lower-cased (ASCII only: slot names are ASCII); its
// kind is the slot up to the first '.'.
//
// Each value is "dev:amount,dev:amount". As upstream, entries with an empty
// device or amount are skipped and a repeated device keeps its last amount.
// An amount is a plain decimal ("1", "0.5") or, for bytes slots, upstream's
// BinarySize ("4g", "512m", "1.5 GiB"); a size suffix is what marks bytes,
// so no slot-type table is needed. Negative or malformed amounts are errors
// naming the key.
func AllocationFromResourceData(data map[string]string, kinds []string) (Allocation, error) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	// Sorted so that errors, including the duplicate-slot one, are stable.
	slices.Sort(keys)
	alloc := Allocation{}
	keyOfSlot := map[string]string{}
	for _, key := range keys {
		if !strings.HasSuffix(key, sharesSuffix) {
			continue
		}
		slot := asciiLower(strings.TrimSuffix(key, sharesSuffix))
		if kinds != nil && !slices.Contains(kinds, KindOfSlot(slot)) {
			continue
		}
		if slot == "" {
			return nil, fmt.Errorf("resource data key %q: names no slot", key)
		}
		if other, dup := keyOfSlot[slot]; dup {
			return nil, fmt.Errorf("resource data keys %q and %q both name slot %q", other, key, slot)
		}
		keyOfSlot[slot] = key
		perDevice, err := parseShares(data[key])
		if err != nil {
			return nil, fmt.Errorf("resource data key %q: %w", key, err)
		}
		alloc[slot] = perDevice
	}
	return alloc, nil
}

func parseShares(value string) (map[string]decimal.Decimal, error) {
	perDevice := map[string]decimal.Decimal{}
	for entry := range strings.SplitSeq(value, ",") {
		rawDevice, rawAmount, _ := strings.Cut(entry, ":")
		device := strings.TrimSpace(rawDevice)
		rawAmount = strings.TrimSpace(rawAmount)
		if device == "" || rawAmount == "" {
			continue
		}
		amount, err := ParseAmount(rawAmount)
		if err != nil {
			return nil, fmt.Errorf("device %q: %w", device, err)
		}
		perDevice[device] = amount
	}
	return perDevice, nil
}

// ParseAmount reads one allocation amount: a non-negative decimal, or a
// binary size with a unit suffix ("4g", "512 MiB") as whole bytes.
func ParseAmount(s string) (decimal.Decimal, error) {
	s = strings.TrimSpace(s)
	d, err := decimal.NewFromString(s)
	if err != nil {
		var sizeErr error
		if d, sizeErr = ParseBinarySize(s); sizeErr != nil {
			return decimal.Zero, fmt.Errorf("invalid amount %q: neither a decimal nor a binary size: %w", s, sizeErr)
		}
	}
	if d.IsNegative() {
		return decimal.Zero, fmt.Errorf("invalid amount %q: negative", s)
	}
	if err := checkAmountRange(d); err != nil {
		return decimal.Zero, fmt.Errorf("invalid amount %q: %w", s, err)
	}
	return d, nil
}

func checkAmountRange(d decimal.Decimal) error {
	if d.IsZero() {
		return nil
	}
	if d.NumDigits()+int(d.Exponent()) > maxAmountIntegerDigits {
		return fmt.Errorf("more than %d integer digits", maxAmountIntegerDigits)
	}
	if d.Exponent() < -maxAmountFractionDigit && !d.Truncate(maxAmountFractionDigit).Equal(d) {
		return fmt.Errorf("more than %d fractional digits", maxAmountFractionDigit)
	}
	return nil
}

// binaryUnitShift maps upstream BinarySize's unit letters to powers of two;
// a space stands for plain bytes ("512 bytes").
func binaryUnitShift(unit byte) (uint, bool) {
	switch unit {
	case ' ':
		return 0, true
	case 'k':
		return 10, true
	case 'm':
		return 20, true
	case 'g':
		return 30, true
	case 't':
		return 40, true
	case 'p':
		return 50, true
	case 'e':
		return 60, true
	case 'z':
		return 70, true
	case 'y':
		return 80, true
	}
	return 0, false
}

// ParseBinarySize parses upstream's BinarySize strings: "4294967296", "4g",
// "1.5G", "512 MiB", "2KB". Fractions are truncated to whole bytes as
// upstream's int() does. Infinite sizes are rejected.
func ParseBinarySize(s string) (decimal.Decimal, error) {
	expr := strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	if n, ok := new(big.Int).SetString(expr, 10); ok {
		return decimal.NewFromBigInt(n, 0), nil
	}
	lower := strings.ToLower(expr)
	switch lower {
	case "inf", "infinite", "infinity":
		return decimal.Zero, fmt.Errorf("binary size %q is infinite", s)
	}
	stem, hasEnding := lower, false
	// Longest first, the order upstream tries them.
	for _, ending := range [...]string{"ibytes", "ibyte", "ib", "bytes", "byte", "b"} {
		if cut, ok := strings.CutSuffix(lower, ending); ok {
			stem, hasEnding = cut, true
			break
		}
	}
	if !hasEnding && (stem == "" || isASCIIDigit(stem[len(stem)-1])) {
		return decimal.Zero, fmt.Errorf("binary size %q: fractional bytes or no unit", s)
	}
	if stem == "" {
		return decimal.Zero, fmt.Errorf("binary size %q: no number", s)
	}
	shift, ok := binaryUnitShift(stem[len(stem)-1])
	if !ok {
		return decimal.Zero, fmt.Errorf("binary size %q: unknown unit %q", s, stem[len(stem)-1:])
	}
	number := strings.TrimSpace(stem[:len(stem)-1])
	if number == "" || strings.ContainsAny(number, "eE") {
		// An exponent beside a unit ("1e3g") is no writer's output.
		return decimal.Zero, fmt.Errorf("binary size %q: invalid number %q", s, number)
	}
	d, err := decimal.NewFromString(number)
	if err != nil {
		return decimal.Zero, fmt.Errorf("binary size %q: %w", s, err)
	}
	if err := checkAmountRange(d); err != nil {
		return decimal.Zero, fmt.Errorf("binary size %q: %w", s, err)
	}
	multiplier := decimal.NewFromBigInt(new(big.Int).Lsh(big.NewInt(1), shift), 0)
	return d.Mul(multiplier).Truncate(0), nil
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// binarySuffixes are upstream's format suffixes by power of 1024.
const binarySuffixes = " kmgtpezy"

// FormatBinarySize writes n bytes as upstream's f"{BinarySize(n):s}": the
// largest power of 1024 not above n, with at most two decimals rounded half
// to even ("4g", "512m", "1.5g"); below 1024 the plain integer. n is
// truncated to whole bytes first.
func FormatBinarySize(n decimal.Decimal) string {
	v := n.Truncate(0).BigInt()
	scale := new(big.Int).Set(v)
	kibi := big.NewInt(1024)
	idx := 0
	for scale.Cmp(kibi) >= 0 && idx < len(binarySuffixes)-1 {
		scale.Quo(scale, kibi)
		idx++
	}
	if idx == 0 {
		return v.String()
	}
	multiplier := new(big.Int).Lsh(big.NewInt(1), uint(10*idx))
	quo, rem := new(big.Int).QuoRem(v, multiplier, new(big.Int))
	if rem.Sign() == 0 {
		return quo.String() + string(binarySuffixes[idx])
	}
	// Hundredths, rounded half to even like Decimal.quantize(Decimal(".00")).
	hundredths, rem := new(big.Int).QuoRem(new(big.Int).Mul(v, big.NewInt(100)), multiplier, new(big.Int))
	switch new(big.Int).Lsh(rem, 1).Cmp(multiplier) {
	case 1:
		hundredths.Add(hundredths, big.NewInt(1))
	case 0:
		if hundredths.Bit(0) == 1 {
			hundredths.Add(hundredths, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(hundredths, -2).String() + string(binarySuffixes[idx])
}

// FormatShares writes one resource.txt allocation line: the key is the slot
// upper-cased plus "_SHARES", the value "dev:amount" pairs in device order
// (numeric IDs numerically, then the rest lexically). Bytes slots are
// written as binary sizes like upstream ("root:4g").
func FormatShares(slot string, amounts map[string]decimal.Decimal, bytes bool) (key, value string) {
	devices := make([]string, 0, len(amounts))
	for dev := range amounts {
		devices = append(devices, dev)
	}
	slices.SortFunc(devices, compareDeviceIDs)
	pieces := make([]string, 0, len(devices))
	for _, dev := range devices {
		amount := amounts[dev]
		if bytes {
			pieces = append(pieces, dev+":"+FormatBinarySize(amount))
		} else {
			pieces = append(pieces, dev+":"+amount.String())
		}
	}
	return asciiUpper(slot) + sharesSuffix, strings.Join(pieces, ",")
}

// compareDeviceIDs orders "2" before "10" so core lists read naturally.
func compareDeviceIDs(a, b string) int {
	an, aErr := strconv.ParseUint(a, 10, 64)
	bn, bErr := strconv.ParseUint(b, 10, 64)
	switch {
	case aErr == nil && bErr == nil && an != bn:
		if an < bn {
			return -1
		}
		return 1
	case aErr == nil && bErr != nil:
		return -1
	case aErr != nil && bErr == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// Slot names are ASCII; mapping only ASCII letters byte by byte keeps
// upper-then-lower a round trip for any bytes a damaged file may hold.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
