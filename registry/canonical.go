package registry

import (
	"strings"
	"time"
	"unicode/utf8"
)

// The registry file is rewritten whole on every change, and with thousands
// of allocations encoding it was a third of every allocate and release. An
// allocation that the decoder found written exactly as appendAllocation
// writes it (the canonical form) keeps the bytes it was read from, and as
// long as nothing in it changes, encodeTo copies those bytes instead of
// encoding it again. Fuzzing checks that the kept bytes are exactly what
// appendAllocation would write.

// source is the file text an allocation was decoded from, and the
// allocation as decoded, to tell whether it has changed since.
type source struct {
	raw  string
	orig Allocation
}

// unchanged reports whether a still holds what it was decoded from, so that
// src.raw is its encoding.
func (a *Allocation) unchanged() bool {
	return a.src != nil && a.equal(&a.src.orig)
}

// equal compares every field but src. TestEqualComparesEveryField makes
// sure a field added to Allocation is added here too.
func (a *Allocation) equal(b *Allocation) bool {
	return a.Port == b.Port && a.ServiceName == b.ServiceName && a.StartedBy == b.StartedBy &&
		a.Purpose == b.Purpose && a.PID == b.PID && a.AllocatedAt == b.AllocatedAt &&
		a.LastHealthCheck == b.LastHealthCheck && a.HealthStatus == b.HealthStatus &&
		a.RequestCount == b.RequestCount && a.ErrorCount == b.ErrorCount && a.ID == b.ID &&
		a.PIDStart == b.PIDStart && a.BootID == b.BootID && a.RegisteredAt == b.RegisteredAt &&
		a.HealthPath == b.HealthPath && equalStrings(a.Command, b.Command) &&
		a.HealthFailures == b.HealthFailures && a.ListenerPID == b.ListenerPID &&
		a.ListenerName == b.ListenerName && a.LastError == b.LastError &&
		len(a.extra) == 0 && len(b.extra) == 0
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// allocationFields are the fields of an allocation in the order the
// encoder writes them, as types.go declares them: the decoders and the
// encoder all work from this one list. always: written even when zero (the
// others are left out when zero, as omitempty/omitzero do).
var allocationFields = [...]allocationField{
	{name: "port", kind: kindInt, always: true, int: func(a *Allocation) *int { return &a.Port }},
	{name: "service_name", kind: kindString, always: true, str: func(a *Allocation) *string { return &a.ServiceName }},
	{name: "started_by", kind: kindString, always: true, str: func(a *Allocation) *string { return &a.StartedBy }},
	{name: "purpose", kind: kindString, always: true, str: func(a *Allocation) *string { return &a.Purpose }},
	{name: "pid", kind: kindInt, int: func(a *Allocation) *int { return &a.PID }},
	{name: "allocated_at", kind: kindTime, always: true, time: func(a *Allocation) *Time { return &a.AllocatedAt }},
	{name: "last_health_check", kind: kindTime, time: func(a *Allocation) *Time { return &a.LastHealthCheck }},
	{name: "health_status", kind: kindString, always: true, str: func(a *Allocation) *string { return &a.HealthStatus }},
	{name: "request_count", kind: kindInt64, always: true, int64: func(a *Allocation) *int64 { return &a.RequestCount }},
	{name: "error_count", kind: kindInt64, always: true, int64: func(a *Allocation) *int64 { return &a.ErrorCount }},
	{name: "allocation_id", kind: kindString, str: func(a *Allocation) *string { return &a.ID }},
	{name: "pid_start", kind: kindUint},
	{name: "boot_id", kind: kindString, str: func(a *Allocation) *string { return &a.BootID }},
	{name: "registered_at", kind: kindTime, time: func(a *Allocation) *Time { return &a.RegisteredAt }},
	{name: "health_path", kind: kindString, str: func(a *Allocation) *string { return &a.HealthPath }},
	{name: "command", kind: kindStrings},
	{name: "health_failures", kind: kindInt, int: func(a *Allocation) *int { return &a.HealthFailures }},
	{name: "listener_pid", kind: kindInt, int: func(a *Allocation) *int { return &a.ListenerPID }},
	{name: "listener_name", kind: kindString, str: func(a *Allocation) *string { return &a.ListenerName }},
	{name: "last_error", kind: kindString, str: func(a *Allocation) *string { return &a.LastError }},
}

type fieldKind uint8

const (
	kindInt     fieldKind = iota // int
	kindInt64                    // int64
	kindUint                     // uint64: pid_start
	kindString                   // string
	kindTime                     // Time
	kindStrings                  // []string: command
)

type allocationField struct {
	name   string
	kind   fieldKind
	always bool
	// The field in an allocation, by kind (pid_start and command are
	// the only fields of their kinds and are named directly).
	int   func(*Allocation) *int
	int64 func(*Allocation) *int64
	str   func(*Allocation) *string
	time  func(*Allocation) *Time
}

// quotedNames are the field names as the canonical form has them after
// the opening quote: name, quote, colon, space.
var quotedNames = func() (q [len(allocationFields)]string) {
	for i, f := range allocationFields {
		q[i] = f.name + `": `
	}
	return q
}()

// field returns the index of the field called name, looking from hint on
// (fields mostly come in order), or -1.
func field(name string, hint int) int {
	for i := range allocationFields {
		j := (hint + i) % len(allocationFields)
		if allocationFields[j].name == name {
			return j
		}
	}
	return -1
}

// Layout of an allocation in the registry file: its fields one indentation
// step deeper than its key.
const (
	fieldStart = "\n      \""
	arrayItem  = "\n        \""
	arrayEnd   = "\n      ]"
	objectEnd  = "\n    }"
)

// canonicalAllocation decodes an allocation written exactly in the canonical
// form, starting at s.i, into a. It reports false, with s.i and a left in
// any state, for anything else; the caller then uses the general decoder.
func (s *scanner) canonicalAllocation(a *Allocation) bool {
	d := s.s
	if !strings.HasPrefix(d[s.i:], "{") {
		return false
	}
	s.i++
	next := 0 // index in allocationFields of the next field that may come
	for first := true; ; first = false {
		if strings.HasPrefix(d[s.i:], objectEnd) && !first {
			s.i += len(objectEnd)
			break
		}
		if !first {
			if !strings.HasPrefix(d[s.i:], ",") {
				return false
			}
			s.i++
		}
		if !strings.HasPrefix(d[s.i:], fieldStart) {
			return false
		}
		s.i += len(fieldStart)
		// The name and `": `, of this field or of a later one: fields left
		// out must be ones that are left out when zero.
		for next < len(allocationFields) && !strings.HasPrefix(d[s.i:], quotedNames[next]) {
			if allocationFields[next].always {
				return false
			}
			next++
		}
		if next == len(allocationFields) {
			return false
		}
		s.i += len(quotedNames[next])
		if !s.canonicalValue(a, next) {
			return false
		}
		next++
	}
	for ; next < len(allocationFields); next++ {
		if allocationFields[next].always {
			return false
		}
	}
	return true
}

// canonicalValue reads the value of allocationFields[f] into a. A field
// that is not always written must not be zero: the encoder would leave it
// out.
func (s *scanner) canonicalValue(a *Allocation, f int) bool {
	fd := &allocationFields[f]
	switch fd.kind {
	case kindInt, kindInt64:
		v, ok := s.canonicalInt()
		if !ok || (!fd.always && v == 0) {
			return false
		}
		return setInt(a, fd, v)
	case kindUint:
		v, ok := s.digits()
		a.PIDStart = v
		return ok && v != 0
	case kindString:
		v, ok := s.canonicalString()
		*fd.str(a) = v
		return ok && (fd.always || v != "")
	case kindTime:
		if strings.HasPrefix(s.s[s.i:], "null") {
			s.i += 4
			*fd.time(a) = Time{}
			return fd.always
		}
		v, ok := s.canonicalString()
		if !ok {
			return false
		}
		t, ok := parseCanonicalTime(v)
		*fd.time(a) = t
		return ok
	case kindStrings:
		if !strings.HasPrefix(s.s[s.i:], "[") {
			return false
		}
		s.i++
		start := len(s.pool)
		for first := true; ; first = false {
			if !first {
				if strings.HasPrefix(s.s[s.i:], arrayEnd) {
					s.i += len(arrayEnd)
					break
				}
				if !strings.HasPrefix(s.s[s.i:], ",") {
					return false
				}
				s.i++
			}
			if !strings.HasPrefix(s.s[s.i:], arrayItem) {
				return false
			}
			s.i += len(arrayItem) - 1 // the quote is read by canonicalString
			v, ok := s.canonicalString()
			if !ok {
				return false
			}
			s.pool = append(s.pool, v)
		}
		a.Command = s.pool[start:len(s.pool):len(s.pool)]
		return true
	}
	return false
}

// setInt stores v in an int or int64 field, if it fits.
func setInt(a *Allocation, fd *allocationField, v int64) bool {
	if fd.kind == kindInt64 {
		*fd.int64(a) = v
		return true
	}
	*fd.int(a) = int(v)
	return int64(int(v)) == v
}

// canonicalInt reads an integer as strconv.AppendInt writes it.
func (s *scanner) canonicalInt() (int64, bool) {
	start := s.i
	if start >= len(s.s) || (s.s[start] != '-' && (s.s[start] < '0' || s.s[start] > '9')) {
		return 0, false // int64 would skip white space; the canonical form has none here
	}
	v, ok := s.int64()
	if !ok || (v == 0 && s.s[start] == '-') {
		return 0, false
	}
	return v, true
}

// canonicalString reads a string that appendString would write the same:
// valid UTF-8 with no escapes and none of the characters it escapes.
func (s *scanner) canonicalString() (string, bool) {
	d, i := s.s, s.i
	if i >= len(d) || d[i] != '"' {
		return "", false
	}
	i++
	start, ascii := i, true
	for ; i < len(d) && d[i] != '"'; i++ {
		if c := d[i]; c >= utf8.RuneSelf {
			ascii = false
		} else if mustEscape[c] {
			return "", false // a backslash, a control character, < > or &
		}
	}
	if i == len(d) {
		return "", false
	}
	v := d[start:i]
	// U+2028 and U+2029 are escaped too.
	if !ascii && (!utf8.ValidString(v) || strings.Contains(v, "\u2028") || strings.Contains(v, "\u2029")) {
		return "", false
	}
	s.i = i + 1
	return v, true
}

// daysIn is the number of days in month m of year y.
func daysIn(m time.Month, y int) int {
	if m == time.February {
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}
