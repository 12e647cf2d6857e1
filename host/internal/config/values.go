package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// HostPort is upstream's HostPortPair. Host may be empty where upstream allows
// it (it then means "detect").
type HostPort struct {
	Host string
	Port int
}

// String returns "host:port", with brackets around an IPv6 host, ready for
// net.Listen and net.Dial.
func (hp HostPort) String() string {
	return net.JoinHostPort(hp.Host, strconv.Itoa(hp.Port))
}

// DialAddr turns a listen address into one a client on this host can dial:
// an unspecified host (0.0.0.0, ::, "") becomes loopback.
func (hp HostPort) DialAddr() string {
	host := hp.Host
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(hp.Port))
}

// ParseHostPort parses a HostPortPair the way upstream does: a "host:port"
// string (split at the last colon), a [host, port] array or a {host, port}
// table. An IP host is normalized; a port must be 1-65535.
func ParseHostPort(value any) (HostPort, error) {
	var host string
	var rawPort any
	switch v := value.(type) {
	case string:
		idx := strings.LastIndex(v, ":")
		if idx < 0 {
			return HostPort{}, fmt.Errorf("%q must be host:port", v)
		}
		host, rawPort = v[:idx], v[idx+1:]
	case []any:
		if len(v) != 2 {
			return HostPort{}, fmt.Errorf("an array must hold exactly [host, port], got %d items", len(v))
		}
		h, ok := v[0].(string)
		if !ok {
			return HostPort{}, fmt.Errorf("host must be a string, got %s", typeName(v[0]))
		}
		host, rawPort = h, v[1]
	case map[string]any:
		h, hasHost := v["host"]
		p, hasPort := v["port"]
		if !hasHost || !hasPort {
			return HostPort{}, errors.New(`a table must have "host" and "port" keys`)
		}
		hs, ok := h.(string)
		if !ok {
			return HostPort{}, fmt.Errorf("host must be a string, got %s", typeName(h))
		}
		host, rawPort = hs, p
	default:
		return HostPort{}, fmt.Errorf("must be a \"host:port\" string, [host, port] or {host, port}, got %s", typeName(value))
	}
	port, err := toInt(rawPort)
	if err != nil {
		return HostPort{}, fmt.Errorf("port: %w", err)
	}
	if port < 1 || port > 65535 {
		return HostPort{}, fmt.Errorf("port %d is not between 1 and 65535", port)
	}
	host = normalizeHost(host)
	if strings.Contains(host, ":") && !isIP(host) {
		return HostPort{}, fmt.Errorf("host %q is neither a host name nor an IP address", host)
	}
	return HostPort{Host: host, Port: port}, nil
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// normalizeHost canonicalizes an IP literal ("[::0001]" -> "::1") and leaves
// host names alone, as upstream does.
func normalizeHost(host string) string {
	if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return addr.String()
	}
	return host
}

// ByteSize is a size in bytes, written in agent.toml as upstream's BinarySize:
// "1G", "16M", "512m", "64KiB", "1.5g" or a plain number of bytes.
type ByteSize int64

// byteSizeMultiplier maps upstream's unit letters to their factor; 'z' and
// 'y' are upstream's too but never fit in int64 (factor 0).
func byteSizeMultiplier(unit byte) (factor int64, known bool) {
	switch unit {
	case ' ':
		return 1, true
	case 'k':
		return 1 << 10, true
	case 'm':
		return 1 << 20, true
	case 'g':
		return 1 << 30, true
	case 't':
		return 1 << 40, true
	case 'p':
		return 1 << 50, true
	case 'e':
		return 1 << 60, true
	case 'z', 'y':
		return 0, true
	}
	return 0, false
}

// ParseByteSize parses a binary size exactly like upstream's
// BinarySize.finite_from_str: underscores are ignored, suffixes are
// case-insensitive powers of 1024, fractions are truncated toward zero after
// scaling, and infinity is rejected.
func ParseByteSize(text string) (ByteSize, error) {
	invalid := func(reason string) (ByteSize, error) {
		return 0, fmt.Errorf("invalid binary size %q: %s", text, reason)
	}
	expr := strings.ReplaceAll(strings.TrimSpace(text), "_", "")
	lower := strings.ToLower(expr)
	switch lower {
	case "inf", "infinite", "infinity":
		return invalid("infinite sizes are not allowed")
	case "":
		return invalid("empty")
	}
	// An integral decimal such as "536870912.000" counts as plain bytes.
	if strings.Contains(expr, ".") {
		if d, err := decimal.NewFromString(expr); err == nil && decimalInSaneRange(d) && d.IsInteger() {
			expr = d.String()
		}
	}
	if n, err := strconv.ParseInt(expr, 10, 64); err == nil {
		return ByteSize(n), nil
	}

	var suffix byte
	var number string
	matchedEnding := false
	// Tried in upstream's order, so "1gib" and "1gb" both mean 1 GiB.
	byteSizeEndings := [...]string{"ibytes", "ibyte", "ib", "bytes", "byte", "b"}
	for _, ending := range byteSizeEndings {
		if stem, ok := strings.CutSuffix(lower, ending); ok {
			if stem == "" {
				return invalid("no number")
			}
			suffix, number = stem[len(stem)-1], stem[:len(stem)-1]
			matchedEnding = true
			break
		}
	}
	if !matchedEnding {
		last := lower[len(lower)-1]
		if last >= '0' && last <= '9' {
			return invalid("fractional bytes are not allowed")
		}
		suffix, number = last, lower[:len(lower)-1]
	}
	multiplier, known := byteSizeMultiplier(suffix)
	if !known {
		return invalid(fmt.Sprintf("unknown unit %q", string(suffix)))
	}
	amount, err := decimal.NewFromString(strings.TrimSpace(number))
	if err != nil {
		return invalid("not a number")
	}
	if !decimalInSaneRange(amount) {
		return invalid("exponent out of range")
	}
	if multiplier == 0 {
		return invalid("too large")
	}
	bytes := amount.Mul(decimal.NewFromInt(multiplier)).Truncate(0)
	if bytes.GreaterThan(decimal.NewFromInt(math.MaxInt64)) || bytes.LessThan(decimal.NewFromInt(math.MinInt64)) {
		return invalid("too large")
	}
	return ByteSize(bytes.IntPart()), nil
}

// String formats the size with the largest unit that divides it exactly
// ("1G", "1536M", "1000"), which ParseByteSize reads back unchanged.
func (size ByteSize) String() string {
	units := []struct {
		suffix string
		factor int64
	}{{"E", 1 << 60}, {"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}
	n := int64(size)
	if n != 0 {
		for _, unit := range units {
			if n%unit.factor == 0 {
				return strconv.FormatInt(n/unit.factor, 10) + unit.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// ParsePortRange reads container.port-range from the environment: "min-max",
// "min:max", "min,max" or "[min, max]".
func ParsePortRange(text string) (PortRange, error) {
	trimmed := strings.TrimSpace(text)
	trimmed = strings.TrimSuffix(strings.TrimPrefix(trimmed, "["), "]")
	fields := strings.FieldsFunc(trimmed, func(r rune) bool { return r == '-' || r == ':' || r == ',' })
	if len(fields) != 2 {
		return PortRange{}, fmt.Errorf("%q must be two ports, like 30000-31000", text)
	}
	var ports [2]int
	for i, field := range fields {
		port, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return PortRange{}, fmt.Errorf("%q must be two ports, like 30000-31000", text)
		}
		ports[i] = port
	}
	return PortRange{Min: ports[0], Max: ports[1]}, nil
}

// toInt accepts what pydantic's lax int accepts from TOML: integers, integral
// floats and numeric strings.
func toInt(value any) (int, error) {
	switch v := value.(type) {
	case int64:
		if v > math.MaxInt32 || v < math.MinInt32 {
			return 0, fmt.Errorf("%d is out of range", v)
		}
		return int(v), nil
	case float64:
		if v != math.Trunc(v) || v > math.MaxInt32 || v < math.MinInt32 {
			return 0, fmt.Errorf("%v is not a whole number in range", v)
		}
		return int(v), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", v)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("must be an integer, got %s", typeName(value))
	}
}

// toSeconds accepts a number of seconds as an integer, float or numeric string.
func toSeconds(value any) (float64, error) {
	switch v := value.(type) {
	case int64:
		return float64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%v is not a number of seconds", v)
		}
		return v, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a number of seconds", v)
		}
		return f, nil
	default:
		return 0, fmt.Errorf("must be a number of seconds, got %s", typeName(value))
	}
}

// toBool accepts booleans plus the strings and 0/1 integers pydantic's lax
// bool accepts.
func toBool(value any) (bool, error) {
	switch v := value.(type) {
	case bool:
		return v, nil
	case int64:
		switch v {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "t", "yes", "y", "on", "1":
			return true, nil
		case "false", "f", "no", "n", "off", "0":
			return false, nil
		}
	}
	return false, fmt.Errorf("must be a boolean, got %s", describe(value))
}

// toDecimal reads an exact decimal from a string, integer or float.
func toDecimal(value any) (decimal.Decimal, error) {
	switch v := value.(type) {
	case string:
		d, err := decimal.NewFromString(strings.TrimSpace(v))
		if err != nil || !decimalInSaneRange(d) {
			return decimal.Decimal{}, fmt.Errorf("%q is not a decimal number in range", v)
		}
		return d, nil
	case int64:
		return decimal.NewFromInt(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return decimal.Decimal{}, fmt.Errorf("%v is not a decimal number", v)
		}
		d := decimal.NewFromFloat(v)
		if !decimalInSaneRange(d) {
			return decimal.Decimal{}, fmt.Errorf("%v is out of range", v)
		}
		return d, nil
	default:
		return decimal.Decimal{}, fmt.Errorf("must be a decimal number, got %s", typeName(value))
	}
}

// decimalInSaneRange rejects exponents like "1e999999999", whose exact
// expansion would take unbounded time and memory.
func decimalInSaneRange(d decimal.Decimal) bool {
	return d.Exponent() >= -64 && d.Exponent() <= 64
}

func typeName(value any) string {
	switch value.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("a %T", value)
	}
}

func describe(value any) string {
	switch v := value.(type) {
	case string:
		return strconv.Quote(v)
	case int64, float64, bool:
		return fmt.Sprint(v)
	default:
		return typeName(value)
	}
}
