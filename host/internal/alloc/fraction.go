package alloc

import (
	"github.com/shopspring/decimal"
)

// allocateFraction runs the fractional strategies on one slot (with the
// fragmentation guard first when the map or the request denies
// fragmentation) and applies the result before quantum rounding, as
// upstream does.
func (m *DeviceMap) allocateFraction(s *slotState, requested decimal.Decimal, order []int, denyFragmentation bool) ([]allocation, error) {
	requested = m.canonical(requested)
	if denyFragmentation {
		if err := m.ensureNotFragmented(s, requested, order); err != nil {
			return nil, err
		}
	}
	var (
		shares []allocation
		err    error
	)
	if m.strategy == Fill {
		free := s.freeSum()
		if free.LessThan(requested) {
			return nil, insufficient(s.name, requested, free, "")
		}
		shares = m.fill(requested, order)
	} else if shares, err = m.fractionEvenly(s, requested, order); err != nil {
		return nil, err
	}
	// Upstream's EVENLY split checks only the last device of a window, which
	// is the smallest only without affinity ordering, and its 0.01 rounding
	// can round a finer request up; either would over-commit a device.
	// Refuse instead.
	for _, sh := range shares {
		if sh.amount.GreaterThan(m.free[sh.device]) {
			return nil, insufficient(s.name, requested, s.freeSum(),
				"the even split would exceed device "+m.devices[sh.device].ID)
		}
	}
	m.applyShares(shares)
	return shares, nil
}

// roundToQuantum rounds each touched device's total and each returned share
// down to the quantum. The totals are rounded as a whole, so a device that
// already held an unaligned amount loses the difference (quantum 0.25,
// restored 0.3, then +0.5: the total becomes 0.75). A share that rounds to
// nothing in total is refused with ErrNotMultipleOfQuantum.
func (m *DeviceMap) roundToQuantum(s *slotState, requested decimal.Decimal, shares []allocation) ([]allocation, error) {
	sum := decZero
	for k, sh := range shares {
		m.setAllocated(sh.device, roundDown(m.allocated[sh.device], m.quantum))
		shares[k].amount = roundDown(sh.amount, m.quantum)
		sum = sum.Add(shares[k].amount)
	}
	if sum.IsZero() {
		return nil, newSlotError(ErrNotMultipleOfQuantum, s.name, requested,
			"the amount rounds down to zero with quantum "+m.quantum.String())
	}
	return shares, nil
}

// ensureNotFragmented is upstream's guard for
// allow_fractional_resource_fragmentation = false. It assumes every device
// has the capacity C of the first device in order. A request up to C must
// fit on one device; a larger one is split over N = ceil(R/C) .. all
// devices as D = round_down(R/N, q) each, with ceil((R - D*N)/q) of them
// holding D+q; the first N that fits passes.
func (m *DeviceMap) ensureNotFragmented(s *slotState, requested decimal.Decimal, order []int) error {
	if len(order) == 0 {
		return newSlotError(ErrFragmented, s.name, requested, "no device left for allocation")
	}
	capacity := m.devices[order[0]].Capacity
	if capacity.Sign() <= 0 {
		return newSlotError(ErrFragmented, s.name, requested, "the first device has no capacity")
	}
	q := m.quantum
	minN := ceilQuo(requested, capacity)
	maxN := int64(len(order))
	if requested.LessThanOrEqual(capacity) {
		maxN = minN
	}
	for n := minN; n <= maxN; n++ {
		nDec := decimal.NewFromInt(n)
		// round_down(R/N, q) computed exactly as floor(R / (N q)) * q.
		quo, _ := requested.QuoRem(nDec.Mul(q), 0)
		share := quo.Mul(q)
		shortfall := requested.Sub(share.Mul(nDec))
		var extraDevices int64
		if shortfall.Sign() > 0 {
			extraDevices = ceilQuo(shortfall, q)
		}
		high := share.Add(q)
		var highCount, lowCount int64
		for _, i := range order {
			if m.free[i].GreaterThanOrEqual(high) {
				highCount++
			} else if m.free[i].GreaterThanOrEqual(share) {
				lowCount++
			}
		}
		if highCount >= extraDevices && highCount+lowCount >= n {
			return nil
		}
	}
	return newSlotError(ErrFragmented, s.name, requested, "no even split over the free devices fits")
}

// fractionEvenly is upstream's FractionAllocMap._allocate_evenly. It works
// at two decimal places whatever the quantum.
func (m *DeviceMap) fractionEvenly(s *slotState, requested decimal.Decimal, order []int) ([]allocation, error) {
	minMemory := m.minMemoryQ
	candidates := m.groupBuf[:0] // orderDevices is done with it
	total := s.freeSum()
	for _, i := range order {
		if m.free[i].GreaterThanOrEqual(minMemory) {
			candidates = append(candidates, i)
		} else {
			total = total.Sub(m.free[i])
		}
	}
	requestedQ := quantize2(requested)
	if quantize2(total).LessThan(requestedQ) || len(candidates) == 0 {
		return nil, insufficient(s.name, requested, total, "")
	}

	// A request that fits on the first device goes to the last device in
	// order that fits: best fit without affinity, the lowest-priority device
	// with it.
	if requested.LessThanOrEqual(m.free[candidates[0]]) {
		for k := len(candidates) - 1; k >= 0; k-- {
			if requested.LessThanOrEqual(m.free[candidates[k]]) {
				return []allocation{{device: candidates[k], amount: quantize2(requested)}}, nil
			}
		}
	}

	// Otherwise rank windows of consecutive candidates, smallest size
	// first: more even wins, then fewer devices. Upstream's third criterion
	// (less fragmentation) never decides, because windows of one size are
	// compared only by size (the last one wins) and different sizes never
	// tie on size. Its early exit on perfect evenness compares a
	// non-positive score with 0.01 and never fires either.
	// prefix[k] is the free capacity of the first k candidates, filled in
	// as far as needed: with idle devices the scan rarely looks past the
	// smallest window.
	prefix := m.prefixBuf[:1]
	prefix[0] = decZero
	prefixAt := func(k int) decimal.Decimal {
		for len(prefix) <= k {
			n := len(prefix)
			prefix = append(prefix, prefix[n-1].Add(m.free[candidates[n-1]]))
		}
		return prefix[k]
	}
	minSize := len(candidates)
	for k := 1; k <= len(candidates); k++ {
		if quantize2(prefixAt(k)).GreaterThanOrEqual(requestedQ) {
			minSize = k
			break
		}
	}
	// buf receives each evaluated split; sizeSplit keeps the accepted one of
	// the current size and bestSplit the overall winner's, so the winner is
	// never computed twice.
	n := len(candidates)
	buf, sizeSplit, bestSplit := m.decBuf[:n], m.decBuf[n:2*n], m.decBuf[2*n:3*n]
	bestStart, bestSize := -1, 0
	var bestEvenness decimal.Decimal
	for size := minSize; size <= n; size++ {
		maxEvenness := m.windowEvenness(candidates[:size], requested, buf)
		copy(sizeSplit, buf[:size])
		sizeStart, sizeEvenness := 0, maxEvenness
		for start := 1; start+size <= n; start++ {
			if m.sameFree(candidates[start-1:start-1+size], candidates[start:start+size]) {
				// Same free capacities as the window just accepted: same
				// total, same split, same evenness.
				sizeStart = start
				continue
			}
			if quantize2(prefixAt(start + size).Sub(prefixAt(start))).LessThan(requestedQ) {
				break
			}
			evenness := m.windowEvenness(candidates[start:start+size], requested, buf)
			if evenness.LessThan(maxEvenness) {
				break
			}
			sizeStart, sizeEvenness = start, evenness
			copy(sizeSplit, buf[:size])
		}
		// Within one size the last acceptable window won above (upstream
		// keeps the last of equal keys); across sizes an equally even split
		// keeps the smaller size found first.
		if bestStart < 0 || sizeEvenness.GreaterThan(bestEvenness) {
			bestStart, bestSize, bestEvenness = sizeStart, size, sizeEvenness
			copy(bestSplit, sizeSplit[:size])
		}
		// A perfectly even split cannot be beaten by a larger window (it
		// would need to be strictly more even). Upstream meant to stop here
		// too, but its check compares with 0.01 and never fires.
		if bestEvenness.IsZero() {
			break
		}
	}
	window := candidates[bestStart : bestStart+bestSize]
	shares := make([]allocation, len(window))
	for k, i := range window {
		shares[k] = allocation{device: i, amount: bestSplit[k]}
	}
	return shares, nil
}

// sameFree reports whether two windows have the same free capacities
// position by position, so they would get the same split.
func (m *DeviceMap) sameFree(a, b []int) bool {
	for k := range a {
		if !m.free[a[k]].Equal(m.free[b[k]]) {
			return false
		}
	}
	return true
}

// windowEvenness is upstream's measure_evenness of the split over window:
// minus the sum of gaps between the sorted shares, which is max - min.
func (m *DeviceMap) windowEvenness(window []int, requested decimal.Decimal, buf []decimal.Decimal) decimal.Decimal {
	m.splitAcross(window, requested, buf)
	lo, hi := buf[0], buf[0]
	for _, v := range buf[1:len(window)] {
		if v.LessThan(lo) {
			lo = v
		}
		if v.GreaterThan(hi) {
			hi = v
		}
	}
	return lo.Sub(hi)
}

// splitAcross is upstream's allocate_across_devices: from the end of the
// window, devices that cannot take an even share give all they have; the
// rest is split evenly at 0.01, the leftover hundredths going to the first
// devices. Shares land in buf, aligned with window.
func (m *DeviceMap) splitAcross(window []int, remaining decimal.Decimal, buf []decimal.Decimal) {
	n := len(window)
	for n > 0 {
		free := m.free[window[n-1]]
		// Upstream compares free >= remaining / n at 28 digits; the product
		// form is the exact version of the same test.
		if free.Mul(m.counts[n]).GreaterThanOrEqual(remaining) {
			break
		}
		buf[n-1] = quantize2(free)
		remaining = remaining.Sub(free)
		n--
	}
	if n == 0 {
		return
	}
	nDec := m.counts[n]
	share, _ := remaining.QuoRem(nDec, hundredthPlaces)
	for k := range n {
		buf[k] = share
	}
	// Python's round() of a Decimal is half-even.
	leftover := remaining.Sub(share.Mul(nDec)).Shift(hundredthPlaces).RoundBank(0).IntPart()
	for k := int64(0); k < leftover && k < int64(n); k++ {
		buf[k] = buf[k].Add(hundredth)
	}
}
