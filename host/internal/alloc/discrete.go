package alloc

import (
	"github.com/shopspring/decimal"
)

// allocateDiscrete runs the discrete strategies on one slot and applies the
// result to the map.
func (m *DeviceMap) allocateDiscrete(s *slotState, requested decimal.Decimal, order []int) ([]allocation, error) {
	var (
		shares []allocation
		err    error
	)
	if m.strategy == Fill {
		shares, err = m.discreteFill(s, requested, order)
	} else {
		shares, err = m.discreteEvenly(s, requested, order)
	}
	if err != nil {
		return nil, err
	}
	m.applyShares(shares)
	return shares, nil
}

// discreteFill takes min(remaining, free) from each device in order. As
// upstream, the capacity check counts whole units per device (int()), but
// the amounts taken are not truncated: a FILL request of 1.5 gets 1 + 0.5.
func (m *DeviceMap) discreteFill(s *slotState, requested decimal.Decimal, order []int) ([]allocation, error) {
	var wholeUnits int64
	for _, i := range order {
		wholeUnits += m.freeTrunc[i]
	}
	if decimal.NewFromInt(wholeUnits).LessThan(requested) {
		return nil, insufficient(s.name, requested, decimal.NewFromInt(wholeUnits), "")
	}
	return m.fill(requested, order), nil
}

// fill is the FILL loop shared by both map types.
func (m *DeviceMap) fill(requested decimal.Decimal, order []int) []allocation {
	var shares []allocation
	remaining := requested
	for _, i := range order {
		if m.free[i].Sign() > 0 {
			take := decimal.Min(remaining, m.free[i])
			shares = append(shares, allocation{device: i, amount: take})
			remaining = remaining.Sub(take)
		}
		if remaining.Sign() <= 0 {
			break
		}
	}
	return shares
}

// discreteEvenly is upstream's discrete EVENLY: the request is truncated
// with int() (1.5 becomes 1 silently), then the remainder is split over the
// devices that still have room, n//k each and one more for the first n%k,
// each capped at the device's whole free units, until nothing remains.
func (m *DeviceMap) discreteEvenly(s *slotState, requested decimal.Decimal, order []int) ([]allocation, error) {
	remaining := truncInt(requested)
	if remaining <= 0 {
		return nil, nil
	}
	taken := m.takenBuf[:len(order)] // aligned with order
	clear(taken)
	var takenTotal int64
	freeTotal := s.freeSum()
	hasRoom := m.roomBuf[:len(order)]
	for remaining > 0 {
		// Upstream: int(sum(capacity - allocated - new)) over the slot.
		wholeUnits := truncInt(freeTotal.Sub(decimal.NewFromInt(takenTotal)))
		if wholeUnits < remaining {
			return nil, insufficient(s.name, requested, decimal.NewFromInt(wholeUnits), "")
		}
		candidates := int64(0)
		for pos, i := range order {
			hasRoom[pos] = m.hasRoomBeyond(i, taken[pos])
			if hasRoom[pos] {
				candidates++
			}
		}
		if candidates == 0 {
			return nil, insufficient(s.name, requested, decimal.NewFromInt(wholeUnits), "no device has free capacity")
		}
		base, extra := remaining/candidates, remaining%candidates
		rank := int64(0)
		progressed := false
		for pos, i := range order {
			share := int64(0)
			if hasRoom[pos] {
				share = base
				if rank < extra {
					share++
				}
				rank++
			}
			// Upstream lets an over-allocated device (negative free, only
			// possible after a restore) contribute a negative share; clamp.
			diff := max(min(m.freeTrunc[i]-taken[pos], share), 0)
			if diff > 0 {
				taken[pos] += diff
				takenTotal += diff
				remaining -= diff
				progressed = true
			}
			if remaining == 0 {
				break
			}
		}
		if !progressed {
			// Only devices with a fraction of a unit left: upstream spins 100
			// rounds and raises a bare ResourceError.
			return nil, insufficient(s.name, requested, decimal.NewFromInt(wholeUnits), "only fractions of units are free")
		}
	}
	var shares []allocation
	for pos, i := range order {
		if taken[pos] > 0 {
			shares = append(shares, allocation{device: i, amount: decimal.NewFromInt(taken[pos])})
		}
	}
	return shares, nil
}

// hasRoomBeyond reports capacity - allocated - taken > 0 for device i.
func (m *DeviceMap) hasRoomBeyond(i int, taken int64) bool {
	switch t := m.freeTrunc[i]; {
	case t > taken:
		return true
	case t == taken && t >= 0:
		// free is in [taken, taken+1): room only if there is a fraction.
		return m.free[i].GreaterThan(decimal.NewFromInt(taken))
	default:
		return false
	}
}
