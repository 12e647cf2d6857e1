package cpu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxCPUIndex bounds core numbers; the kernel's NR_CPUS tops out at 8192, so
// anything far above is corrupt data, and the bound keeps a bogus "0-999999999"
// from allocating gigabytes.
const maxCPUIndex = 1 << 16

// ParseCPUList parses the kernel's cpulist format ("0-3,8,10-11", as in
// cpuset.cpus.effective and node*/cpulist) into sorted, unique core numbers.
// Surrounding whitespace and a trailing newline are ignored; an empty list
// gives no cores. Empty elements, reversed ranges and non-numbers are errors.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	// A bitset rather than a sorted slice: overlapping ranges in a damaged
	// file ("0-65536,0-65536,...") then cost no more than one range.
	var set []bool
	for elem := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(elem, "-")
		lo, err := parseCPUIndex(first)
		if err != nil {
			return nil, fmt.Errorf("cpulist %q: element %q: %w", s, elem, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseCPUIndex(last); err != nil {
				return nil, fmt.Errorf("cpulist %q: element %q: %w", s, elem, err)
			}
			if hi < lo {
				return nil, fmt.Errorf("cpulist %q: element %q: range runs backwards", s, elem)
			}
		}
		if hi >= len(set) {
			set = append(set, make([]bool, hi+1-len(set))...)
		}
		for c := lo; c <= hi; c++ {
			set[c] = true
		}
	}
	var cores []int
	for c, in := range set {
		if in {
			cores = append(cores, c)
		}
	}
	return cores, nil
}

func parseCPUIndex(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing core number")
	}
	// Only digits: strconv would also take "+1".
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a core number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxCPUIndex {
		return 0, fmt.Errorf("core number %q out of range (max %d)", s, maxCPUIndex)
	}
	return n, nil
}

// FormatCoreList writes cores sorted and comma-separated ("0,1,5"), the form
// upstream gives Docker's CpusetCpus.
func FormatCoreList(cores []int) string {
	sorted := slices.Clone(cores)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	parts := make([]string, len(sorted))
	for i, c := range sorted {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}
