// Package registry owns gracectl's state on disk: the port registry
// (databases/port_registry/port_registry.json), the lock file beside it
// (port_registry.json.lock, never renamed or deleted), allocation and release
// of ports, the watchdog's persisted state (watchdog.json) and the daily audit
// log (logs/port_manager/allocations_YYYYMMDD.jsonl).
//
// The registry file keeps the shape of the seed document:
//
//	{"allocations": {"8000": {"port": 8000, "service_name": ..., ...}},
//	 "last_updated": "2025-11-15T14:35:00Z"}
//
// Every change goes through Store.Update, which holds an exclusive flock on
// the lock file, reads and validates the file, lets the caller change it,
// writes it atomically (temp file, fsync, rename) and appends the audit lines
// the change produced; then it unlocks, and returns only once the folder and
// the log are fsynced too. Readers take a shared lock. Fields gracectl does not know survive
// every rewrite, at the top level and in each allocation.
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the seed's timestamp form: RFC 3339, UTC, to the second.
const TimeLayout = "2006-01-02T15:04:05Z"

// Time is a UTC instant stored to the second in the seed's form.
type Time struct{ time.Time }

// Now is the current time truncated to the second, in UTC.
func Now() Time { return Time{time.Now().UTC().Truncate(time.Second)} }

func (t Time) String() string {
	if t.IsZero() {
		return ""
	}
	b := appendTime(make([]byte, 0, 24), t)
	return string(b[1 : len(b)-1])
}

// MarshalJSON writes the seed's form.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.String() + `"`), nil
}

// UnmarshalJSON accepts any RFC 3339 time (a hand-edited file may carry an
// offset or fractions) and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	var s string
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 {
		s = string(b[1 : len(b)-1]) // the usual case, without a second decode
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp must be a string, got %s", truncate(b))
	}
	if s == "" {
		*t = Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("timestamp %q is not RFC 3339", s)
	}
	*t = Time{v.UTC()}
	return nil
}

// Health statuses. One vocabulary, used by the registry, status, check and
// the API; docs/health-status.md explains each.
const (
	StatusActive       = "active"
	StatusStarting     = "starting"
	StatusUnhealthy    = "unhealthy"
	StatusNotListening = "not_listening"
	StatusDead         = "dead"
	StatusReserved     = "reserved"
	StatusOrphaned     = "orphaned"
)

// Allocation is one port's record. The first ten fields are the seed's; the
// rest are what correctness needs.
type Allocation struct {
	Port            int    `json:"port"`
	ServiceName     string `json:"service_name"`
	StartedBy       string `json:"started_by"`
	Purpose         string `json:"purpose"`
	PID             int    `json:"pid,omitempty"`
	AllocatedAt     Time   `json:"allocated_at"`
	LastHealthCheck Time   `json:"last_health_check,omitzero"`
	HealthStatus    string `json:"health_status"`
	RequestCount    int64  `json:"request_count"`
	ErrorCount      int64  `json:"error_count"`

	// ID tells this allocation from an earlier or later one of the same
	// port, even within one second.
	ID string `json:"allocation_id,omitempty"`
	// PIDStart identifies the owner together with PID, so that a reused PID
	// is never taken for the owner: on Linux the start time in clock ticks
	// since boot (/proc/PID/stat field 22), on macOS microseconds since the
	// epoch. Zero when unknown.
	PIDStart uint64 `json:"pid_start,omitempty"`
	// BootID is the kernel boot the PID belongs to (Linux), since start
	// times restart from zero at every boot.
	BootID       string   `json:"boot_id,omitempty"`
	RegisteredAt Time     `json:"registered_at,omitzero"`
	HealthPath   string   `json:"health_path,omitempty"`
	Command      []string `json:"command,omitempty"`
	// HealthFailures counts consecutive failed health checks.
	HealthFailures int `json:"health_failures,omitempty"`
	// ListenerPID is the process found serving the port when it is not the
	// owner (orphaned ports, daemonized services).
	ListenerPID  int    `json:"listener_pid,omitempty"`
	ListenerName string `json:"listener_name,omitempty"`
	LastError    string `json:"last_error,omitempty"`

	extra map[string]json.RawMessage
	// src is the text this allocation was read from, when that was its
	// canonical form (see canonical.go).
	src *source
}

// Reserved reports whether nobody has claimed the port yet.
func (a *Allocation) Reserved() bool { return a.PID <= 0 }

// Registry is the whole registry file.
type Registry struct {
	Allocations map[string]*Allocation `json:"allocations"`
	LastUpdated Time                   `json:"last_updated,omitzero"`

	extra map[string]json.RawMessage
}

// Get returns the allocation for port, or nil.
func (r *Registry) Get(port int) *Allocation { return r.Allocations[strconv.Itoa(port)] }

// Put stores a under its port's key.
func (r *Registry) Put(a *Allocation) {
	if r.Allocations == nil {
		r.Allocations = map[string]*Allocation{}
	}
	r.Allocations[strconv.Itoa(a.Port)] = a
}

// Delete removes port's allocation.
func (r *Registry) Delete(port int) { delete(r.Allocations, strconv.Itoa(port)) }

// keyed is an allocation with its key in the registry.
type keyed struct {
	key  string
	port int // the key's number, or -1 if it is not a port number
	a    *Allocation
}

// sortedEntries returns the allocations ordered by key: by length, then
// text, which for port numbers is numeric order.
func (r *Registry) sortedEntries() []keyed {
	out := make([]keyed, 0, len(r.Allocations))
	ports := true
	for k, a := range r.Allocations {
		p, ok := portKey(k)
		if !ok {
			p, ports = -1, false
		}
		out = append(out, keyed{k, p, a})
	}
	if ports {
		// The usual case: sort port-and-index pairs as plain numbers,
		// several times faster than sorting the entries with a function.
		order := make([]uint64, len(out))
		for i, e := range out {
			order[i] = uint64(e.port)<<32 | uint64(i)
		}
		slices.Sort(order)
		sorted := make([]keyed, len(out))
		for i, v := range order {
			sorted[i] = out[uint32(v)]
		}
		return sorted
	}
	slices.SortFunc(out, func(x, y keyed) int {
		if x.port >= 0 && y.port >= 0 {
			return x.port - y.port
		}
		if len(x.key) != len(y.key) {
			return len(x.key) - len(y.key)
		}
		return strings.Compare(x.key, y.key)
	})
	return out
}

// Sorted returns the allocations ordered by port.
func (r *Registry) Sorted() []*Allocation {
	out := make([]*Allocation, 0, len(r.Allocations))
	for _, a := range r.Allocations {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y *Allocation) int { return x.Port - y.Port })
	return out
}

// Clone returns a deep copy, so probes can work on a snapshot while others
// change the registry.
func (a *Allocation) Clone() *Allocation {
	c := *a
	c.Command = append([]string(nil), a.Command...)
	if a.extra != nil {
		c.extra = make(map[string]json.RawMessage, len(a.extra))
		for k, v := range a.extra {
			c.extra[k] = v
		}
	}
	return &c
}

// SameAs reports whether b is still the allocation a was taken from: the
// same port, owner and allocation time. The watchdog applies its findings
// only to allocations that pass this test.
func (a *Allocation) SameAs(b *Allocation) bool {
	return a.Port == b.Port && a.ID == b.ID && a.PID == b.PID && a.PIDStart == b.PIDStart && a.AllocatedAt.Equal(b.AllocatedAt.Time)
}

type allocationJSON Allocation

var allocationKeys = jsonKeys(allocationJSON{})

// UnmarshalJSON decodes the known fields and keeps every other one.
func (a *Allocation) UnmarshalJSON(b []byte) error {
	var v allocationJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return describeJSONError(err)
	}
	extra, err := unknownFields(b, allocationKeys)
	if err != nil {
		return err
	}
	*a = Allocation(v)
	a.extra = extra
	return nil
}

// MarshalJSON writes the known fields in order, then the unknown ones kept
// from the file, sorted by name.
func (a *Allocation) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal((*allocationJSON)(a))
	if err != nil {
		return nil, err
	}
	return appendExtra(b, a.extra)
}

type registryJSON Registry

var registryKeys = jsonKeys(registryJSON{})

// UnmarshalJSON decodes the registry and keeps unknown fields. The common
// file, with no unknown field, is decoded in one pass; only a file that has
// some takes the slower path that collects them.
func (r *Registry) UnmarshalJSON(b []byte) error {
	var fast struct {
		Allocations map[string]*allocationJSON `json:"allocations"`
		LastUpdated Time                       `json:"last_updated"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&fast)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return errors.New("unexpected data after the top-level object")
		}
		out := Registry{Allocations: make(map[string]*Allocation, len(fast.Allocations)), LastUpdated: fast.LastUpdated}
		for key, a := range fast.Allocations {
			if a == nil {
				return fmt.Errorf("allocation %q: is null", key)
			}
			out.Allocations[key] = (*Allocation)(a)
		}
		*r = out
		return nil
	}
	// Unknown fields to keep, or an error to report: the slow path decodes
	// allocation by allocation, so its errors name the allocation.
	return r.unmarshalKeepingUnknown(b)
}

func (r *Registry) unmarshalKeepingUnknown(b []byte) error {
	var v struct {
		Allocations map[string]json.RawMessage `json:"allocations"`
		LastUpdated Time                       `json:"last_updated"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return describeJSONError(err)
	}
	extra, err := unknownFields(b, registryKeys)
	if err != nil {
		return err
	}
	out := Registry{Allocations: make(map[string]*Allocation, len(v.Allocations)), LastUpdated: v.LastUpdated, extra: extra}
	for key, raw := range v.Allocations {
		a := new(Allocation)
		if err := json.Unmarshal(raw, a); err != nil {
			return fmt.Errorf("allocation %q: %w", key, describeJSONError(err))
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			return fmt.Errorf("allocation %q: is null", key)
		}
		out.Allocations[key] = a
	}
	*r = out
	return nil
}

// describeJSONError turns encoding/json's errors, which name Go types, into
// ones that name the JSON field.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return fmt.Errorf("expected %s, got JSON %s", jsonKind(te.Type), te.Value)
		}
		return fmt.Errorf("field %q: expected %s, got JSON %s", field, jsonKind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// MarshalJSON writes the registry with unknown fields kept. It assembles
// the object itself, allocations sorted by port key, so that encoding/json
// does not re-validate each allocation's output.
func (r *Registry) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"allocations":{`)
	for i, e := range r.sortedEntries() {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(e.key)
		buf.Write(kb)
		buf.WriteByte(':')
		ab, err := e.a.MarshalJSON()
		if err != nil {
			return nil, err
		}
		buf.Write(ab)
	}
	buf.WriteByte('}')
	if !r.LastUpdated.IsZero() {
		buf.WriteString(`,"last_updated":`)
		tb, _ := r.LastUpdated.MarshalJSON()
		buf.Write(tb)
	}
	buf.WriteByte('}')
	return appendExtra(buf.Bytes(), r.extra)
}

// jsonKeys lists the JSON names of a struct's fields, from their tags.
func jsonKeys(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

func unknownFields(b []byte, known map[string]bool) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	var extra map[string]json.RawMessage
	for k, v := range m {
		if known[k] {
			continue
		}
		if extra == nil {
			extra = map[string]json.RawMessage{}
		}
		extra[k] = v
	}
	return extra, nil
}

func appendExtra(b []byte, extra map[string]json.RawMessage) ([]byte, error) {
	if len(extra) == 0 {
		return b, nil
	}
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	first := len(b) == 2 // "{}"
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		var compact bytes.Buffer
		if err := json.Compact(&compact, extra[k]); err != nil {
			return nil, err
		}
		buf.Write(compact.Bytes())
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
