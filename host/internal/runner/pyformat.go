package runner

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Service definitions are templates for Python's str.format_map (upstream's
// kernel/service.py and service_actions.py). The values they see are few:
// str (runtime_path, a write_tempfile path), int, a list of ints (ports), a
// dict of str (a run_command result) and None (the other actions' results).
// This file renders those the way CPython does, and fails where CPython
// raises, naming the exception as CPython would.

// pyDict is a dict of str in insertion order.
type pyDict struct {
	keys []string
	vals map[string]string
}

// pyError is a Python exception: its class and its message.
type pyError struct {
	class string
	msg   string
}

// str is Python's str(e): a KeyError shows its key's repr.
func (e *pyError) str() string {
	if e.class == "KeyError" {
		return pyRepr(e.msg)
	}
	return e.msg
}

// Error is Python's repr(e), which upstream puts into a failed start.
func (e *pyError) Error() string { return e.class + "(" + pyRepr(e.msg) + ")" }

func pyErr(class, format string, args ...any) *pyError {
	return &pyError{class: class, msg: fmt.Sprintf(format, args...)}
}

// pyTypeName is type(v).__name__.
func pyTypeName(v any) string {
	switch v.(type) {
	case string:
		return "str"
	case int:
		return "int"
	case []int:
		return "list"
	case pyDict:
		return "dict"
	case nil:
		return "NoneType"
	}
	return fmt.Sprintf("%T", v)
}

// pyStr is str(v).
func pyStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return pyRepr(v)
}

// pyRepr is repr(v).
func pyRepr(v any) string {
	switch v := v.(type) {
	case string:
		return reprString(v, false)
	case int:
		return strconv.Itoa(v)
	case []int:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = strconv.Itoa(p)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case pyDict:
		parts := make([]string, len(v.keys))
		for i, k := range v.keys {
			parts[i] = reprString(k, false) + ": " + reprString(v.vals[k], false)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case nil:
		return "None"
	}
	return fmt.Sprint(v)
}

// reprString quotes as CPython's unicode_repr: single quotes unless the
// text has one and no double quote; ascii escapes every non-ASCII rune.
func reprString(s string, ascii bool) string {
	quote := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteRune(quote)
	for _, r := range s {
		switch {
		case r == quote || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case !ascii && unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteRune(quote)
	return b.String()
}

// formatMap is fmt.format_map(vars).
func formatMap(format string, vars map[string]any) (string, error) {
	return formatMapDepth([]rune(format), vars, 2)
}

func formatMapDepth(rs []rune, vars map[string]any, depth int) (string, error) {
	if depth < 0 {
		return "", pyErr("ValueError", "Max string recursion exceeded")
	}
	var b strings.Builder
	for i := 0; i < len(rs); {
		switch c := rs[i]; {
		case c == '}':
			if i+1 < len(rs) && rs[i+1] == '}' {
				b.WriteByte('}')
				i += 2
				continue
			}
			return "", pyErr("ValueError", "Single '}' encountered in format string")
		case c != '{':
			b.WriteRune(c)
			i++
			continue
		case i+1 == len(rs):
			return "", pyErr("ValueError", "Single '{' encountered in format string")
		case rs[i+1] == '{':
			b.WriteByte('{')
			i += 2
			continue
		}
		// A replacement field; its format spec may nest fields.
		count, j := 1, i+1
		for ; j < len(rs); j++ {
			if rs[j] == '{' {
				count++
			} else if rs[j] == '}' {
				if count--; count == 0 {
					break
				}
			}
		}
		if count != 0 {
			return "", pyErr("ValueError", "expected '}' before end of string")
		}
		out, err := formatField(rs[i+1:j], vars, depth)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
		i = j + 1
	}
	return b.String(), nil
}

// formatField renders one field: name, !conversion, :spec.
func formatField(field []rune, vars map[string]any, depth int) (string, error) {
	end := len(field)
	var sep rune
scan:
	for k := 0; k < len(field); k++ {
		switch field[k] {
		case '{':
			return "", pyErr("ValueError", "unexpected '{' in field name")
		case '[':
			for k < len(field) && field[k] != ']' {
				k++
			}
		case ':', '!':
			end, sep = k, field[k]
			break scan
		}
	}
	name, rest := field[:end], []rune(nil)
	if end < len(field) {
		rest = field[end+1:]
	}
	var conversion rune
	if sep == '!' {
		if len(rest) == 0 {
			return "", pyErr("ValueError", "end of string while looking for conversion specifier")
		}
		conversion, rest = rest[0], rest[1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return "", pyErr("ValueError", "expected ':' after conversion specifier")
			}
			rest = rest[1:]
		}
	}
	value, err := lookupField(string(name), vars)
	if err != nil {
		return "", err
	}
	switch conversion {
	case 0:
	case 's':
		value = pyStr(value)
	case 'r':
		value = pyRepr(value)
	case 'a':
		if s, ok := value.(string); ok {
			value = reprString(s, true)
		} else {
			value = pyRepr(value)
		}
	default:
		return "", pyErr("ValueError", "Unknown conversion specifier %c", conversion)
	}
	spec := string(rest)
	if strings.ContainsRune(spec, '{') {
		if spec, err = formatMapDepth(rest, vars, depth-1); err != nil {
			return "", err
		}
	}
	return formatValue(value, spec)
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// lookupField resolves "first(.attr|[key])*" as string.Formatter does
// against a mapping.
func lookupField(name string, vars map[string]any) (any, error) {
	first := name
	if i := strings.IndexAny(name, ".["); i >= 0 {
		first = name[:i]
	}
	rest := name[len(first):]
	if first == "" {
		return nil, pyErr("ValueError", "Format string contains positional fields")
	}
	if isDecimal(first) {
		n, _ := strconv.Atoi(first)
		return nil, pyErr("IndexError", "Replacement index %d out of range for positional args tuple", n)
	}
	value, ok := vars[first]
	if !ok {
		return nil, &pyError{class: "KeyError", msg: first}
	}
	for rest != "" {
		switch rest[0] {
		case '.':
			attr := rest[1:]
			if i := strings.IndexAny(attr, ".["); i >= 0 {
				attr = attr[:i]
			}
			if attr == "" {
				return nil, pyErr("ValueError", "Empty attribute in format string")
			}
			// Attributes of these values are methods, never a template's text.
			return nil, pyErr("AttributeError", "'%s' object has no attribute %s", pyTypeName(value), pyRepr(attr))
		case '[':
			close := strings.IndexByte(rest, ']')
			if close < 0 {
				return nil, pyErr("ValueError", "Missing ']' in format string")
			}
			key := rest[1:close]
			if key == "" {
				return nil, pyErr("ValueError", "Empty attribute in format string")
			}
			rest = rest[close+1:]
			if rest != "" && rest[0] != '.' && rest[0] != '[' {
				return nil, pyErr("ValueError", "Only '.' or '[' may follow ']' in format field specifier")
			}
			var err error
			if value, err = getItem(value, key); err != nil {
				return nil, err
			}
		}
	}
	return value, nil
}

// getItem is value[key]; a decimal key is an int, as in format strings.
func getItem(value any, key string) (any, error) {
	index, isInt := -1, isDecimal(key)
	if isInt {
		n, err := strconv.Atoi(key)
		if err != nil {
			return nil, pyErr("IndexError", "cannot fit 'int' into an index-sized integer")
		}
		index = n
	}
	switch v := value.(type) {
	case string:
		if !isInt {
			return nil, pyErr("TypeError", "string indices must be integers, not 'str'")
		}
		rs := []rune(v)
		if index >= len(rs) {
			return nil, pyErr("IndexError", "string index out of range")
		}
		return string(rs[index]), nil
	case []int:
		if !isInt {
			return nil, pyErr("TypeError", "list indices must be integers or slices, not str")
		}
		if index >= len(v) {
			return nil, pyErr("IndexError", "list index out of range")
		}
		return v[index], nil
	case pyDict:
		s, ok := v.vals[key]
		if !ok || isInt {
			return nil, &pyError{class: "KeyError", msg: key}
		}
		return s, nil
	}
	return nil, pyErr("TypeError", "'%s' object is not subscriptable", pyTypeName(value))
}

// formatSpec is the standard format-spec mini-language.
type formatSpec struct {
	fill      rune
	fillGiven bool
	align     rune
	sign      rune
	alt       bool
	zero      bool
	width     int
	grouping  rune
	precision int // -1: none
	typ       rune
}

func isAlign(r rune) bool { return r == '<' || r == '>' || r == '=' || r == '^' }

func parseSpec(spec, typeName string) (formatSpec, error) {
	rs := []rune(spec)
	f := formatSpec{fill: ' ', precision: -1}
	i := 0
	if len(rs) >= 2 && isAlign(rs[1]) {
		f.fill, f.fillGiven, f.align, i = rs[0], true, rs[1], 2
	} else if len(rs) >= 1 && isAlign(rs[0]) {
		f.align, i = rs[0], 1
	}
	if i < len(rs) && (rs[i] == '+' || rs[i] == '-' || rs[i] == ' ') {
		f.sign, i = rs[i], i+1
	}
	if i < len(rs) && rs[i] == 'z' {
		i++
	}
	if i < len(rs) && rs[i] == '#' {
		f.alt, i = true, i+1
	}
	if i < len(rs) && rs[i] == '0' {
		f.zero, i = true, i+1
	}
	digits := func() (int, bool) {
		start := i
		for i < len(rs) && rs[i] >= '0' && rs[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
		n, err := strconv.Atoi(string(rs[start:i]))
		return n, err == nil
	}
	if n, ok := digits(); ok {
		f.width = n
	}
	if i < len(rs) && (rs[i] == ',' || rs[i] == '_') {
		f.grouping, i = rs[i], i+1
	}
	if i < len(rs) && rs[i] == '.' {
		i++
		n, ok := digits()
		if !ok {
			return f, pyErr("ValueError", "Format specifier missing precision")
		}
		f.precision = n
	}
	if len(rs)-i > 1 {
		return f, pyErr("ValueError", "Invalid format specifier '%s' for object of type '%s'", spec, typeName)
	}
	if i < len(rs) {
		f.typ = rs[i]
	}
	return f, nil
}

// formatValue is format(value, spec).
func formatValue(value any, spec string) (string, error) {
	switch v := value.(type) {
	case string:
		return formatStr(v, spec)
	case int:
		return formatInt(v, spec)
	}
	if spec != "" {
		return "", pyErr("TypeError", "unsupported format string passed to %s.__format__", pyTypeName(value))
	}
	return pyStr(value), nil
}

func pad(body string, f formatSpec, defaultAlign rune, signPrefix string) string {
	align := f.align
	if align == 0 {
		align = defaultAlign
	}
	n := f.width - utf8.RuneCountInString(body) - utf8.RuneCountInString(signPrefix)
	if n <= 0 {
		return signPrefix + body
	}
	fill := strings.Repeat(string(f.fill), n)
	switch align {
	case '<':
		return signPrefix + body + fill
	case '^':
		left := strings.Repeat(string(f.fill), n/2)
		return left + signPrefix + body + strings.Repeat(string(f.fill), n-n/2)
	case '=':
		return signPrefix + fill + body
	}
	return fill + signPrefix + body
}

func formatStr(s, spec string) (string, error) {
	f, err := parseSpec(spec, "str")
	if err != nil {
		return "", err
	}
	switch {
	case f.typ != 0 && f.typ != 's':
		return "", pyErr("ValueError", "Unknown format code '%c' for object of type 'str'", f.typ)
	case f.sign != 0:
		return "", pyErr("ValueError", "Sign not allowed in string format specifier")
	case f.alt:
		return "", pyErr("ValueError", "Alternate form (#) not allowed in string format specifier")
	case f.grouping != 0:
		return "", pyErr("ValueError", "Cannot specify '%c' with 's'.", f.grouping)
	case f.align == '=':
		return "", pyErr("ValueError", "'=' alignment not allowed in string format specifier")
	}
	if f.zero && !f.fillGiven {
		f.fill = '0'
	}
	if f.precision >= 0 {
		if rs := []rune(s); len(rs) > f.precision {
			s = string(rs[:f.precision])
		}
	}
	return pad(s, f, '<', ""), nil
}

func group(digits string, every int, sep rune) string {
	if sep == 0 || len(digits) <= every {
		return digits
	}
	var parts []string
	for len(digits) > every {
		parts = append([]string{digits[len(digits)-every:]}, parts...)
		digits = digits[:len(digits)-every]
	}
	return digits + string(sep) + strings.Join(parts, string(sep))
}

func formatInt(n int, spec string) (string, error) {
	f, err := parseSpec(spec, "int")
	if err != nil {
		return "", err
	}
	if f.precision >= 0 {
		return "", pyErr("ValueError", "Precision not allowed in integer format specifier")
	}
	if f.zero && !f.fillGiven {
		f.fill = '0'
		if f.align == 0 {
			f.align = '='
		}
	}
	abs := n
	if abs < 0 {
		abs = -abs
	}
	var body, prefix string
	switch f.typ {
	case 0, 'd', 'n':
		if f.typ == 'n' && f.grouping != 0 {
			return "", pyErr("ValueError", "Cannot specify '%c' with 'n'.", f.grouping)
		}
		body = group(strconv.Itoa(abs), 3, f.grouping)
	case 'x', 'X', 'o', 'b':
		if f.grouping == ',' {
			return "", pyErr("ValueError", "Cannot specify ',' with '%c'.", f.typ)
		}
		base := map[rune]int{'x': 16, 'X': 16, 'o': 8, 'b': 2}[f.typ]
		body = group(strconv.FormatInt(int64(abs), base), 4, f.grouping)
		if f.typ == 'X' {
			body = strings.ToUpper(body)
		}
		if f.alt {
			prefix = "0" + string(f.typ)
		}
	case 'c':
		if f.sign != 0 || f.alt || f.grouping != 0 {
			return "", pyErr("ValueError", "Sign not allowed with integer format specifier 'c'")
		}
		if n < 0 || n > unicode.MaxRune {
			return "", pyErr("OverflowError", "%%c arg not in range(0x110000)")
		}
		return pad(string(rune(n)), f, '<', ""), nil
	default:
		// Float presentation of an int (e, f, g, %) has no use in a
		// service definition; refused rather than approximated.
		return "", pyErr("ValueError", "Unknown format code '%c' for object of type 'int' (in baiagent's runner)", f.typ)
	}
	sign := ""
	switch {
	case n < 0:
		sign = "-"
	case f.sign == '+':
		sign = "+"
	case f.sign == ' ':
		sign = " "
	}
	return pad(body, f, '>', sign+prefix), nil
}

// interpolate is upstream's ServiceArgumentInterpolator.apply for one
// string: each "${{ expr }}" and each "{expr}" not preceded by "$" or "{"
// becomes ("{" + expr + "}").format_map(vars); the text between stays as
// it is. An undefined variable or a malformed field is an
// InvalidServiceDefinition.
func interpolate(part string, vars map[string]any) (string, error) {
	rs := []rune(part)
	var b strings.Builder
	last := 0
	for i := 0; i < len(rs); i++ {
		var expr []rune
		var end int
		var ok bool
		if rs[i] == '$' && i+2 < len(rs) && rs[i+1] == '{' && rs[i+2] == '{' {
			expr, end, ok = matchExpr(rs, i+3, "}}")
		}
		if !ok && rs[i] == '{' && (i == 0 || (rs[i-1] != '$' && rs[i-1] != '{')) {
			expr, end, ok = matchExpr(rs, i+1, "}")
		}
		if !ok {
			continue
		}
		b.WriteString(string(rs[last:i]))
		out, err := formatMap("{"+string(expr)+"}", vars)
		if err != nil {
			return "", interpolationError(part, err)
		}
		b.WriteString(out)
		last, i = end, end-1
	}
	b.WriteString(string(rs[last:]))
	return b.String(), nil
}

func interpolationError(part string, err error) error {
	var pe *pyError
	if !asPyError(err, &pe) {
		return err
	}
	switch pe.class {
	case "KeyError", "IndexError":
		return &pyError{class: "InvalidServiceDefinition", msg: fmt.Sprintf("Cannot interpolate service argument %s: undefined template variable %s.", pyRepr(part), pe.str())}
	case "ValueError":
		return &pyError{class: "InvalidServiceDefinition", msg: fmt.Sprintf("Cannot interpolate service argument %s: %s. Literal braces (e.g. JSON like vLLM '--hf-overrides') are not supported.", pyRepr(part), pe.str())}
	}
	return pe
}

func asPyError(err error, target **pyError) bool {
	pe, ok := err.(*pyError)
	if ok {
		*target = pe
	}
	return ok
}

func isPySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

// matchExpr matches `\s*(?P<expr>.*?)\s*<closing>` from start: the
// shortest expression without a newline that whitespace and the closing
// braces follow.
func matchExpr(rs []rune, start int, closing string) (expr []rune, end int, ok bool) {
	j := start
	for j < len(rs) && isPySpace(rs[j]) {
		j++
	}
	cl := []rune(closing)
	for k := j; ; k++ {
		m := k
		for m < len(rs) && isPySpace(rs[m]) {
			m++
		}
		if m+len(cl) <= len(rs) && string(rs[m:m+len(cl)]) == closing {
			return rs[j:k], m + len(cl), true
		}
		if k >= len(rs) || rs[k] == '\n' {
			return nil, 0, false
		}
	}
}
