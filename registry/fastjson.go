package registry

import (
	"bytes"
	"encoding/json"
	"io"
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
	if y < 0 || mo < 1 || mo > 12 || d < 1 || d > daysIn(time.Month(mo), y) || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59 {
		return Time{}, false
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
	next := 0
	for {
		k, ok := s.str()
		if !ok || !s.lit(':') {
			return false
		}
		if next = field(k, next); next < 0 {
			return false // an unknown field: encoding/json keeps it
		}
		if !s.value(a, &allocationFields[next]) {
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

// value reads the value of field fd into a, in any form encoding/json
// would read the same way without escapes.
func (s *scanner) value(a *Allocation, fd *allocationField) bool {
	switch fd.kind {
	case kindInt, kindInt64:
		v, ok := s.int64()
		return ok && setInt(a, fd, v)
	case kindUint:
		var ok bool
		a.PIDStart, ok = s.uint64()
		return ok
	case kindString:
		var ok bool
		*fd.str(a), ok = s.str()
		return ok
	case kindTime:
		var ok bool
		*fd.time(a), ok = s.time()
		return ok
	case kindStrings:
		var ok bool
		a.Command, ok = s.strings()
		return ok
	}
	return false
}

// decodeFast parses the canonical form of a registry; ok is false when the
// input needs encoding/json (to keep unknown fields, decode escapes, or
// report an error). The registry keeps substrings of data.
// With keepText, allocations in the canonical form keep the text they were
// read from, for the encoder to reuse (see canonical.go); readers that
// never write leave it off.
func decodeFast(data string, keepText bool) (*Registry, bool) {
	s := &scanner{s: data}
	// Each allocation is one object: the count of '{' is a close guess of
	// their number, so the map and the allocations are allocated once.
	n := strings.Count(data, "{")
	slab := make([]Allocation, n)
	var sources []source
	if keepText {
		sources = make([]source, n)
	}
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
				if pos := s.i; strings.HasPrefix(s.s[pos:], " {") {
					s.i++
					pooled := len(s.pool)
					if s.canonicalAllocation(a) {
						if len(sources) > 0 {
							src := &sources[0]
							sources = sources[1:]
							src.raw, src.orig = s.s[pos+1:s.i], *a
							a.src = src
						}
						r.Allocations[key] = a
						return true
					}
					s.i, *a, s.pool = pos, Allocation{}, s.pool[:pooled]
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

// encodeIndented returns r as encodeTo writes it.
func encodeIndented(r *Registry) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeTo(&buf, r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeChunk is how much encodeTo gathers before each write: a registry of
// thousands of allocations is written through one small buffer instead of
// being built whole in memory first.
const encodeChunk = 128 << 10

// encodeTo writes r as encoding/json and json.Indent(…, "", "  ") would,
// plus a final newline.
func encodeTo(w io.Writer, r *Registry) error {
	entries := r.sortedEntries()
	b := make([]byte, 0, min(encodeChunk, 256+len(entries)*400)+4096)
	flush := func() error {
		_, err := w.Write(b)
		b = b[:0]
		return err
	}
	b = append(b, "{\n  \"allocations\": {"...)
	for i, e := range entries {
		if len(b) >= encodeChunk {
			if err := flush(); err != nil {
				return err
			}
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendString(b, e.key)
		b = append(b, ": "...)
		if e.a.unchanged() {
			b = append(b, e.a.src.raw...) // as read, and as appendAllocation would write it
			continue
		}
		var err error
		if b, err = appendAllocation(b, e.a, "    "); err != nil {
			return err
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
		return err
	}
	b = append(b, "\n}\n"...)
	return flush()
}

// Field indentation at the depth of an allocation in the registry file.
const allocationFieldIndent = "\n      "

func appendAllocation(b []byte, a *Allocation, indent string) ([]byte, error) {
	in := allocationFieldIndent
	if indent != "    " {
		in = "\n" + indent + "  "
	}
	b = append(b, '{')
	first := true
	for i := range allocationFields {
		fd := &allocationFields[i]
		if !fd.always && fd.isZero(a) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, in...)
		b = append(b, '"')
		b = append(b, quotedNames[i]...)
		switch fd.kind {
		case kindInt:
			b = strconv.AppendInt(b, int64(*fd.int(a)), 10)
		case kindInt64:
			b = strconv.AppendInt(b, *fd.int64(a), 10)
		case kindUint:
			b = strconv.AppendUint(b, a.PIDStart, 10)
		case kindString:
			b = appendString(b, *fd.str(a))
		case kindTime:
			b = appendTime(b, *fd.time(a))
		case kindStrings:
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
	}
	b, err := appendExtraIndented(b, a.extra, indent+"  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	b = append(b, indent...)
	b = append(b, '}')
	return b, nil
}

// isZero reports whether the field holds its zero value, which the encoder
// leaves out unless the field is always written.
func (fd *allocationField) isZero(a *Allocation) bool {
	switch fd.kind {
	case kindInt:
		return *fd.int(a) == 0
	case kindInt64:
		return *fd.int64(a) == 0
	case kindUint:
		return a.PIDStart == 0
	case kindString:
		return *fd.str(a) == ""
	case kindTime:
		return fd.time(a).IsZero()
	case kindStrings:
		return len(a.Command) == 0
	}
	return false
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
