package rpcserver

import (
	"math"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/baiagent/baiagent/host/internal/config"
	"github.com/baiagent/baiagent/host/internal/wiremsg"
)

// shmemBytes reads resource_opts["shmem"], the size of the kernel's
// /dev/shm. The 26.8 manager sends int bytes (the user's value, the
// image's ai.backend.resource.preferred.shmem label, or 64m); a BinarySize,
// a Decimal or a string with a unit ("1g", as BinarySize reads it) are
// taken too. Upstream applies int(value) when the value is truthy
// (agent/docker/agent.py), so None, absent and zero mean "Docker's
// default" and a fractional Decimal or float is truncated.
func shmemBytes(path string, opts map[string]any) (int64, error) {
	v, ok := opts["shmem"]
	if !ok || v == nil {
		return 0, nil
	}
	var n int64
	switch x := v.(type) {
	case int64, uint64, wiremsg.BinarySize:
		var err error
		if n, err = intValue(path, v); err != nil {
			return 0, err
		}
	case decimal.Decimal:
		t := x.Truncate(0)
		if t.GreaterThan(decimal.NewFromInt(math.MaxInt64)) || t.LessThan(decimal.NewFromInt(math.MinInt64)) {
			return 0, argError("ValueError", path, "%s is out of range", x)
		}
		n = t.IntPart()
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x >= math.MaxInt64 || x <= math.MinInt64 {
			return 0, argError("ValueError", path, "%v is not a size", x)
		}
		n = int64(x)
	case string:
		if strings.TrimSpace(x) == "" {
			return 0, nil
		}
		size, err := config.ParseByteSize(x)
		if err != nil {
			return 0, argError("ValueError", path, "%v", err)
		}
		n = int64(size)
	default:
		return 0, argError("TypeError", path, "must be int or a size string, not %s", wiremsg.PyTypeName(v))
	}
	if n < 0 {
		return 0, argError("ValueError", path, "%d is negative", n)
	}
	return n, nil
}

// denyFragmentation reads resource_opts["allow_fractional_resource_fragmentation"]
// (default True, agent/agent.py create_kernel): False asks the allocator's
// fragmentation guard for this kernel's fractional slots. None is the default.
func denyFragmentation(path string, opts map[string]any) (bool, error) {
	v, ok := opts["allow_fractional_resource_fragmentation"]
	if !ok || v == nil {
		return false, nil
	}
	allow, ok := v.(bool)
	if !ok {
		return false, argError("TypeError", path, "must be bool, not %s", wiremsg.PyTypeName(v))
	}
	return !allow, nil
}
