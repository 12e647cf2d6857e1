package alloc

import "github.com/shopspring/decimal"

// Fixed decimals used by upstream's algorithms. They are never mutated.
var (
	decZero = decimal.Zero
	decOne  = decimal.NewFromInt(1)
	// hundredth is FractionAllocMap.digits: the EVENLY strategy works at
	// two decimal places whatever the quantum.
	hundredth          = decimal.New(1, -2)
	defaultQuantum     = decimal.New(1, -2)
	defaultMinMemory   = decimal.New(1, -2)
	hundredthPlaces    = int32(2)
	maxTruncatableFree = decimal.NewFromInt(1 << 62)
)

// roundDown floors x to a multiple of q (upstream's round_down, which is
// exact: remainder_near plus a correction for negative remainders).
func roundDown(x, q decimal.Decimal) decimal.Decimal {
	// Fast path: x has no digits finer than a power-of-ten quantum.
	if places, ok := powerOfTenPlaces(q); ok && -x.Exponent() <= places {
		return x
	}
	n, r := x.QuoRem(q, 0)
	if r.Sign() < 0 {
		n = n.Sub(decOne)
	}
	return n.Mul(q)
}

// quantize2 is Decimal.quantize(Decimal("0.01")) under Python's default
// ROUND_HALF_EVEN context.
func quantize2(x decimal.Decimal) decimal.Decimal {
	if x.Exponent() >= -hundredthPlaces {
		return x // already at two decimals or coarser
	}
	return x.RoundBank(hundredthPlaces)
}

// powerOfTenPlaces reports whether q is 10^-places (0.01, 0.1, 1, ...).
func powerOfTenPlaces(q decimal.Decimal) (int32, bool) {
	if q.Sign() <= 0 || q.Exponent() > 0 || q.NumDigits() != 1 || q.CoefficientInt64() != 1 {
		return 0, false
	}
	return -q.Exponent(), true
}

// truncInt is Python's int() of a Decimal (truncation toward zero). Amounts
// beyond ±2^62 saturate, far above any real capacity.
func truncInt(x decimal.Decimal) int64 {
	// Fast path without allocation: an integer coefficient well inside int64.
	if x.Exponent() == 0 && x.NumDigits() <= 18 {
		return x.IntPart()
	}
	if x.Abs().GreaterThanOrEqual(maxTruncatableFree) {
		if x.Sign() < 0 {
			return -(1 << 62)
		}
		return 1 << 62
	}
	return x.IntPart()
}

// ceilQuo returns ceil(a/b) for positive b.
func ceilQuo(a, b decimal.Decimal) int64 {
	q, r := a.QuoRem(b, 0)
	n := q.IntPart()
	if r.Sign() > 0 {
		n++
	}
	return n
}
