package registry

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
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
	b []byte
	i int
	// Values that repeat across allocations (statuses, boot IDs, times)
	// are decoded once.
	strs  map[string]string
	times map[string]Time
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit consumes c after optional white space.
func (s *scanner) lit(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// raw reads a string without escapes, control characters or invalid UTF-8
// and returns its bytes, which alias the input.
func (s *scanner) raw() ([]byte, bool) {
	if !s.lit('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 {
		return nil, false
	}
	v := s.b[s.i : s.i+end]
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			return nil, false // escapes and control characters: encoding/json
		}
	}
	if !utf8.Valid(v) {
		return nil, false
	}
	s.i += end + 1
	return v, true
}

// str reads a string (see raw), sharing one copy of values that repeat.
func (s *scanner) str() (string, bool) {
	v, ok := s.raw()
	if !ok {
		return "", false
	}
	if len(v) > 64 {
		return string(v), true
	}
	if x, ok := s.strs[string(v)]; ok {
		return x, true
	}
	x := string(v)
	if s.strs == nil {
		s.strs = map[string]string{}
	}
	s.strs[x] = x
	return x, true
}

// digits reads a JSON integer: -?(0|[1-9][0-9]*), followed by no fraction
// or exponent.
func (s *scanner) digits() ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	d := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - d
	if n == 0 || (n > 1 && s.b[d] == '0') {
		return nil, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil, false
	}
	return s.b[start:s.i], true
}

func (s *scanner) int64() (int64, bool) {
	d, ok := s.digits()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(d), 10, 64)
	return v, err == nil
}

func (s *scanner) int() (int, bool) {
	v, ok := s.int64()
	return int(v), ok && int64(int(v)) == v
}

func (s *scanner) uint64() (uint64, bool) {
	d, ok := s.digits()
	if !ok || d[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d), 10, 64)
	return v, err == nil
}

func (s *scanner) time() (Time, bool) {
	if s.peek() == 'n' {
		if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
			s.i += 4
			return Time{}, true
		}
		return Time{}, false
	}
	v, ok := s.raw()
	if !ok {
		return Time{}, false
	}
	if len(v) == 0 {
		return Time{}, true
	}
	if t, ok := s.times[string(v)]; ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, string(v))
	if err != nil {
		return Time{}, false
	}
	if s.times == nil {
		s.times = map[string]Time{}
	}
	s.times[string(v)] = Time{t.UTC()}
	return Time{t.UTC()}, true
}

func (s *scanner) strings() ([]string, bool) {
	if !s.lit('[') {
		return nil, false
	}
	out := []string{}
	if s.lit(']') {
		return out, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.lit(']') {
			return out, true
		}
		if !s.lit(',') {
			return nil, false
		}
	}
}

// object calls field for each key of an object; field consumes the value.
// The key aliases the input.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.lit('{') {
		return false
	}
	if s.lit('}') {
		return true
	}
	for {
		k, ok := s.raw()
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

func (s *scanner) allocation(a *Allocation) bool {
	return s.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
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
		}
		return ok // an unknown field: not ok, encoding/json keeps it
	})
}

// decodeFast parses the canonical form of a registry; ok is false when the
// input needs encoding/json (to keep unknown fields, decode escapes, or
// report an error).
func decodeFast(b []byte) (*Registry, bool) {
	s := &scanner{b: b}
	r := &Registry{Allocations: map[string]*Allocation{}}
	ok := s.object(func(k []byte) bool {
		switch string(k) {
		case "allocations":
			// A repeated "allocations" adds to the map, as encoding/json does.
			return s.object(func(key []byte) bool {
				a := new(Allocation)
				if !s.allocation(a) {
					return false
				}
				r.Allocations[string(key)] = a
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
	if !ok || s.i != len(b) {
		return nil, false
	}
	return r, true
}

// encodeIndented writes r as encoding/json and json.Indent(…, "", "  ")
// would, plus a final newline.
func encodeIndented(r *Registry) ([]byte, error) {
	keys := r.sortedKeys()
	b := make([]byte, 0, 64+len(keys)*420)
	b = append(b, "{\n  \"allocations\": {"...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendString(b, k)
		b = append(b, ": "...)
		var err error
		if b, err = appendAllocation(b, r.Allocations[k], "    "); err != nil {
			return nil, err
		}
	}
	if len(keys) > 0 {
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

func appendAllocation(b []byte, a *Allocation, indent string) ([]byte, error) {
	in := "\n" + indent + "  "
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, in...)
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, "\": "...)
	}
	str := func(name, v string, always bool) {
		if always || v != "" {
			field(name)
			b = appendString(b, v)
		}
	}
	num := func(name string, v int64, always bool) {
		if always || v != 0 {
			field(name)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	tm := func(name string, v Time, always bool) {
		if always || !v.IsZero() {
			field(name)
			b = appendTime(b, v)
		}
	}
	b = append(b, '{')
	// The order and omissions of the struct tags in types.go.
	num("port", int64(a.Port), true)
	str("service_name", a.ServiceName, true)
	str("started_by", a.StartedBy, true)
	str("purpose", a.Purpose, true)
	num("pid", int64(a.PID), false)
	tm("allocated_at", a.AllocatedAt, true)
	tm("last_health_check", a.LastHealthCheck, false)
	str("health_status", a.HealthStatus, true)
	num("request_count", a.RequestCount, true)
	num("error_count", a.ErrorCount, true)
	str("allocation_id", a.ID, false)
	if a.PIDStart != 0 {
		field("pid_start")
		b = strconv.AppendUint(b, a.PIDStart, 10)
	}
	str("boot_id", a.BootID, false)
	tm("registered_at", a.RegisteredAt, false)
	str("health_path", a.HealthPath, false)
	if len(a.Command) > 0 {
		field("command")
		b = append(b, '[')
		for i, c := range a.Command {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, in...)
			b = append(b, "  "...)
			b = appendString(b, c)
		}
		b = append(b, in...)
		b = append(b, ']')
	}
	num("health_failures", int64(a.HealthFailures), false)
	num("listener_pid", int64(a.ListenerPID), false)
	str("listener_name", a.ListenerName, false)
	str("last_error", a.LastError, false)
	var err error
	if b, err = appendExtraIndented(b, a.extra, indent+"  "); err != nil {
		return nil, err
	}
	b = append(b, '\n')
	b = append(b, indent...)
	b = append(b, '}')
	return b, nil
}

func appendTime(b []byte, t Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"')
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

// appendString quotes s as encoding/json does (HTML-safe, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
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
