package registry

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A hand-written decoder and encoder for gracectl's own registry schema.
// encoding/json spends most of its time on reflection and on validating the
// same bytes several times; with thousands of allocations that dominated
// every command. The fast decoder accepts only the canonical subset gracectl
// writes (known fields, strings without escapes, whole numbers) and reports
// !ok for anything else, which then goes through encoding/json; so it never
// decides what is valid, it only speeds up what certainly is. Fuzz tests
// check that both paths agree, and that the encoder writes byte for byte
// what encoding/json plus json.Indent would.

type scanner struct {
	// s is the input. Decoded strings are substrings of it, so a registry
	// of thousands of allocations costs no allocation per field.
	s    string
	i    int
	pool []string
}

// isSpace marks JSON's white space bytes.
var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// word reads 8 bytes of s at i, little-endian (the compiler makes it one
// load).
func word(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

const (
	ones        = 0x0101010101010101
	highBits    = 0x8080808080808080
	eightSpaces = ones * ' '
)

func (s *scanner) ws() {
	b, i := s.s, s.i
	for i < len(b) && isSpace[b[i]] {
		i++
		// Indentation comes in runs of spaces: skip up to eight at once.
		for i+8 <= len(b) {
			x := word(b, i) ^ eightSpaces
			if x != 0 {
				i += bits.TrailingZeros64(x) / 8
				break
			}
			i += 8
		}
	}
	s.i = i
}

// lit consumes c after optional white space.
func (s *scanner) lit(c byte) bool {
	if s.i < len(s.s) && s.s[s.i] == c {
		s.i++
		return true
	}
	s.ws()
	if s.i < len(s.s) && s.s[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.s) {
		return s.s[s.i]
	}
	return 0
}

// str reads a string without escapes, control characters or invalid
// UTF-8, as a substring of the input.
func (s *scanner) str() (string, bool) {
	if !s.lit('"') {
		return "", false
	}
	b, start := s.s, s.i
	i := start
	// Eight bytes at a time while none is a quote, a backslash, a control
	// character or part of a multi-byte character.
	for ; i+8 <= len(b); i += 8 {
		x := word(b, i)
		q, bs := x^(ones*'"'), x^(ones*'\\')
		if ((x-ones*0x20)|(q-ones)|(bs-ones)|x)&highBits != 0 {
			break
		}
	}
	ascii := true
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if !ascii && !utf8.ValidString(b[start:i]) {
				return "", false
			}
			s.i = i + 1
			return b[start:i], true
		case c < 0x20 || c == '\\':
			return "", false // escapes and control characters: encoding/json
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// int64 reads a JSON integer: -?(0|[1-9][0-9]*), followed by no fraction
// or exponent, that fits in 64 bits.
func (s *scanner) int64() (int64, bool) {
	s.ws()
	neg := s.i < len(s.s) && s.s[s.i] == '-'
	if neg {
		s.i++
	}
	u, ok := s.digits()
	if !ok {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// digits reads the digits of an unsigned JSON integer.
func (s *scanner) digits() (uint64, bool) {
	b, d := s.s, s.i
	i := d
	var v uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		c := uint64(b[i] - '0')
		if v > (1<<64-1-c)/10 {
			return 0, false // overflow
		}
		v = v*10 + c
	}
	s.i = i
	n := i - d
	if n == 0 || (n > 1 && b[d] == '0') {
		return 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, false
	}
	return v, true
}

func (s *scanner) int() (int, bool) {
	v, ok := s.int64()
	return int(v), ok && int64(int(v)) == v
}

func (s *scanner) uint64() (uint64, bool) {
	s.ws()
	return s.digits()
}

func (s *scanner) time() (Time, bool) {
	if s.peek() == 'n' {
		if strings.HasPrefix(s.s[s.i:], "null") {
			s.i += 4
			return Time{}, true
		}
		return Time{}, false
	}
	v, ok := s.str()
	if !ok {
		return Time{}, false
	}
	if len(v) == 0 {
		return Time{}, true
	}
	if t, ok := parseCanonicalTime(v); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return Time{}, false
	}
	return Time{t.UTC()}, true
}

// parseCanonicalTime reads the form gracectl writes, 2006-01-02T15:04:05Z,
// without time.Parse's generality; anything else is left to time.Parse.
func parseCanonicalTime(v string) (Time, bool) {
	if len(v) != 20 || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' || v[19] != 'Z' {
		return Time{}, false
	}
	num := func(i, n int) int {
		x := 0
		for j := i; j < i+n; j++ {
			c := v[j]
			if c < '0' || c > '9' {
				return -1
			}
			x = x*10 + int(c-'0')
		}
		return x
	}
	y, mo, d, h, mi, sec := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || d > 28 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59 {
		return Time{}, false // days 29-31 are checked by time.Parse
	}
	return Time{time.Date(y, time.Month(mo), d, h, mi, sec, 0, time.UTC)}, true
}

// strings reads an array of strings. The arrays of all allocations share
// one backing array; each is cut to its own length and capacity, so an
// append to one never writes into another.
func (s *scanner) strings() ([]string, bool) {
	if !s.lit('[') {
		return nil, false
	}
	if s.lit(']') {
		return []string{}, true
	}
	start := len(s.pool)
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		s.pool = append(s.pool, v)
		if s.lit(']') {
			return s.pool[start:len(s.pool):len(s.pool)], true
		}
		if !s.lit(',') {
			return nil, false
		}
	}
}

// object calls field for each key of an object; field consumes the value.
func (s *scanner) object(field func(key string) bool) bool {
	if !s.lit('{') {
		return false
	}
	if s.lit('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.lit(':') || !field(k) {
			return false
		}
		if s.lit('}') {
			return true
		}
		if !s.lit(',') {
			return false
		}
	}
}

// allocation decodes one allocation object.
func (s *scanner) allocation(a *Allocation) bool {
	if !s.lit('{') {
		return false
	}
	if s.lit('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.lit(':') {
			return false
		}
		switch k {
		case "port":
			a.Port, ok = s.int()
		case "service_name":
			a.ServiceName, ok = s.str()
		case "started_by":
			a.StartedBy, ok = s.str()
		case "purpose":
			a.Purpose, ok = s.str()
		case "pid":
			a.PID, ok = s.int()
		case "allocated_at":
			a.AllocatedAt, ok = s.time()
		case "last_health_check":
			a.LastHealthCheck, ok = s.time()
		case "health_status":
			a.HealthStatus, ok = s.str()
		case "request_count":
			a.RequestCount, ok = s.int64()
		case "error_count":
			a.ErrorCount, ok = s.int64()
		case "allocation_id":
			a.ID, ok = s.str()
		case "pid_start":
			a.PIDStart, ok = s.uint64()
		case "boot_id":
			a.BootID, ok = s.str()
		case "registered_at":
			a.RegisteredAt, ok = s.time()
		case "health_path":
			a.HealthPath, ok = s.str()
		case "command":
			a.Command, ok = s.strings()
		case "health_failures":
			a.HealthFailures, ok = s.int()
		case "listener_pid":
			a.ListenerPID, ok = s.int()
		case "listener_name":
			a.ListenerName, ok = s.str()
		case "last_error":
			a.LastError, ok = s.str()
		default:
			return false // an unknown field: encoding/json keeps it
		}
		if !ok {
			return false
		}
		if s.lit('}') {
			return true
		}
		if !s.lit(',') {
			return false
		}
	}
}

// decodeFast parses the canonical form of a registry; ok is false when the
// input needs encoding/json (to keep unknown fields, decode escapes, or
// report an error). The registry keeps substrings of data.
func decodeFast(data string) (*Registry, bool) {
	s := &scanner{s: data}
	// Each allocation is one object: the count of '{' is a close guess of
	// their number, so the map and the allocations are allocated once.
	n := strings.Count(data, "{")
	slab := make([]Allocation, n)
	r := &Registry{Allocations: make(map[string]*Allocation, n)}
	ok := s.object(func(k string) bool {
		switch k {
		case "allocations":
			// A repeated "allocations" adds to the map, as encoding/json does.
			return s.object(func(key string) bool {
				var a *Allocation
				if len(slab) > 0 {
					a, slab = &slab[0], slab[1:]
				} else {
					a = new(Allocation)
				}
				if !s.allocation(a) {
					return false
				}
				r.Allocations[key] = a
				return true
			})
		case "last_updated":
			var ok bool
			r.LastUpdated, ok = s.time()
			return ok
		}
		return false
	})
	s.ws()
	if !ok || s.i != len(data) {
		return nil, false
	}
	return r, true
}

// encodeIndented writes r as encoding/json and json.Indent(…, "", "  ")
// would, plus a final newline.
func encodeIndented(r *Registry) ([]byte, error) {
	entries := r.sortedEntries()
	b := make([]byte, 0, 64+len(entries)*420)
	b = append(b, "{\n  \"allocations\": {"...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendString(b, e.key)
		b = append(b, ": "...)
		var err error
		if b, err = appendAllocation(b, e.a, "    "); err != nil {
			return nil, err
		}
	}
	if len(entries) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, '}')
	if !r.LastUpdated.IsZero() {
		b = append(b, ",\n  \"last_updated\": "...)
		b = appendString(b, r.LastUpdated.String())
	}
	var err error
	if b, err = appendExtraIndented(b, r.extra, "  "); err != nil {
		return nil, err
	}
	b = append(b, "\n}\n"...)
	return b, nil
}

// fieldWriter appends the fields of one indented object.
type fieldWriter struct {
	b     []byte
	in    string // newline and indentation of a field
	first bool
}

func (w *fieldWriter) name(name string) {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
	w.b = append(w.b, w.in...)
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, "\": "...)
}

func (w *fieldWriter) str(name, v string, always bool) {
	if always || v != "" {
		w.name(name)
		w.b = appendString(w.b, v)
	}
}

func (w *fieldWriter) num(name string, v int64, always bool) {
	if always || v != 0 {
		w.name(name)
		w.b = strconv.AppendInt(w.b, v, 10)
	}
}

func (w *fieldWriter) time(name string, v Time, always bool) {
	if always || !v.IsZero() {
		w.name(name)
		w.b = appendTime(w.b, v)
	}
}

// Field indentation at the depth of an allocation in the registry file.
const allocationFieldIndent = "\n      "

func appendAllocation(b []byte, a *Allocation, indent string) ([]byte, error) {
	in := allocationFieldIndent
	if indent != "    " {
		in = "\n" + indent + "  "
	}
	w := fieldWriter{b: append(b, '{'), in: in, first: true}
	// The order and omissions of the struct tags in types.go.
	w.num("port", int64(a.Port), true)
	w.str("service_name", a.ServiceName, true)
	w.str("started_by", a.StartedBy, true)
	w.str("purpose", a.Purpose, true)
	w.num("pid", int64(a.PID), false)
	w.time("allocated_at", a.AllocatedAt, true)
	w.time("last_health_check", a.LastHealthCheck, false)
	w.str("health_status", a.HealthStatus, true)
	w.num("request_count", a.RequestCount, true)
	w.num("error_count", a.ErrorCount, true)
	w.str("allocation_id", a.ID, false)
	if a.PIDStart != 0 {
		w.name("pid_start")
		w.b = strconv.AppendUint(w.b, a.PIDStart, 10)
	}
	w.str("boot_id", a.BootID, false)
	w.time("registered_at", a.RegisteredAt, false)
	w.str("health_path", a.HealthPath, false)
	if len(a.Command) > 0 {
		w.name("command")
		w.b = append(w.b, '[')
		for i, c := range a.Command {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = append(w.b, in...)
			w.b = append(w.b, "  "...)
			w.b = appendString(w.b, c)
		}
		w.b = append(w.b, in...)
		w.b = append(w.b, ']')
	}
	w.num("health_failures", int64(a.HealthFailures), false)
	w.num("listener_pid", int64(a.ListenerPID), false)
	w.str("listener_name", a.ListenerName, false)
	w.str("last_error", a.LastError, false)
	b, err := appendExtraIndented(w.b, a.extra, indent+"  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	b = append(b, indent...)
	b = append(b, '}')
	return b, nil
}

// appendTime writes t as a JSON string in TimeLayout, or null.
func appendTime(b []byte, t Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	u := t.UTC()
	y, mo, d := u.Date()
	h, mi, sec := u.Clock()
	if y < 0 || y > 9999 {
		b = append(b, '"')
		b = u.AppendFormat(b, TimeLayout)
		return append(b, '"')
	}
	two := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	b = append(b, '"', byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = two(b, int(mo))
	b = append(b, '-')
	b = two(b, d)
	b = append(b, 'T')
	b = two(b, h)
	b = append(b, ':')
	b = two(b, mi)
	b = append(b, ':')
	b = two(b, sec)
	return append(b, 'Z', '"')
}

// appendExtraIndented appends the unknown fields kept from the file, sorted,
// each value indented as json.Indent would.
func appendExtraIndented(b []byte, extra map[string]json.RawMessage, indent string) ([]byte, error) {
	if len(extra) == 0 {
		return b, nil
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		b = append(b, ",\n"...)
		b = append(b, indent...)
		b = appendString(b, k)
		b = append(b, ": "...)
		var buf bytes.Buffer
		if err := json.Compact(&buf, extra[k]); err != nil {
			return nil, err
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, buf.Bytes(), indent, "  "); err != nil {
			return nil, err
		}
		b = append(b, ind.Bytes()...)
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// mustEscape marks the ASCII bytes encoding/json escapes in a string.
var mustEscape = func() (t [utf8.RuneSelf]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	for _, c := range `"\\<>&` {
		t[c] = true
	}
	return t
}()

// appendString quotes s as encoding/json does (HTML-safe, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if !mustEscape[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
