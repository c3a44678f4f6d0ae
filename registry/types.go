// Package registry owns gracectl's state on disk: the port registry
// (databases/port_registry/port_registry.json), the lock file beside it
// (port_registry.json.lock, never renamed or deleted), allocation and release
// of ports, and the daily audit log
// (logs/port_manager/allocations_YYYYMMDD.jsonl).
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
// the log are fsynced too. Readers take no lock: the file is only ever
// replaced whole (rename), so a reader sees the old one or the new one.
// Fields gracectl does not know survive every rewrite, at the top level and
// in each allocation.
// All JSON goes through json.go.
//
// It never prints (notices go to Store.Notice) and never signals a
// process; it looks at processes (through probe) only to tell whether an
// owner still lives before it replaces or releases its port.
package registry

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"golang.org/x/text/unicode/norm"
)

// TimeLayout is the seed's timestamp form: RFC 3339, UTC, to the second.
const TimeLayout = "2006-01-02T15:04:05Z"

// Time is a UTC instant stored to the second in the seed's form; the zero
// Time is JSON null.
type Time struct{ time.Time }

// Now is the current time truncated to the second, in UTC.
func Now() Time { return Time{time.Now().UTC().Truncate(time.Second)} }

func (t Time) String() string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// Ago says how long before now t was, to the second ("1m5s ago"; never
// negative), or "at an unknown time" for the zero Time: an entry without
// the time is never shown as 2562047 hours old.
func (t Time) Ago(now time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return max(now.Sub(t.Time), 0).Round(time.Second).String() + " ago"
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

// Statuses is the whole vocabulary, in the order docs/health-status.md
// gives it.
var Statuses = []string{StatusReserved, StatusStarting, StatusActive, StatusUnhealthy, StatusNotListening, StatusDead, StatusOrphaned}

// Allocation is one port's record. The first ten fields are the seed's; the
// rest are what correctness needs. The file holds the fields in this order.
type Allocation struct {
	Port            int      `json:"port"`
	ServiceName     string   `json:"service_name"`
	StartedBy       string   `json:"started_by"`
	Purpose         string   `json:"purpose"`
	PID             OwnerPID `json:"pid"`
	AllocatedAt     Time     `json:"allocated_at"`
	LastHealthCheck Time     `json:"last_health_check"`
	HealthStatus    string   `json:"health_status"`
	RequestCount    int64    `json:"request_count"`
	ErrorCount      int64    `json:"error_count"`

	// ID tells this allocation from an earlier or later one of the same
	// port, even within one second.
	ID string `json:"allocation_id,omitzero"`
	// PortName tells a service's ports apart when it holds several
	// (`run --port http --port admin`); empty for the usual one port.
	PortName string `json:"port_name,omitzero"`
	// PIDStart identifies the owner together with PID, so that a reused PID
	// is never taken for the owner: on Linux the start time in clock ticks
	// since boot (/proc/PID/stat field 22), on macOS microseconds since the
	// epoch. Zero when unknown.
	PIDStart uint64 `json:"pid_start,omitzero"`
	// BootID is the kernel boot the PID belongs to (Linux), since start
	// times restart from zero at every boot.
	BootID string `json:"boot_id,omitzero"`
	// PIDNS is the inode of the PID namespace PID belongs to (a service
	// started inside a container has its own), NetNS that of the network
	// namespace the owner listens in; 0 when unknown or off Linux.
	PIDNS        uint64 `json:"pid_ns,omitzero"`
	NetNS        uint64 `json:"net_ns,omitzero"`
	RegisteredAt Time   `json:"registered_at,omitzero"`
	// SupervisorPID and SupervisorStart name the `gracectl run` that
	// launched the owner and answers for the port while it lives.
	SupervisorPID   int      `json:"supervisor_pid,omitzero"`
	SupervisorStart uint64   `json:"supervisor_start,omitzero"`
	SupervisorPIDNS uint64   `json:"supervisor_pid_ns,omitzero"`
	HealthPath      string   `json:"health_path,omitzero"`
	Command         []string `json:"command,omitempty"`
	// CountsAt is when the service last reported request_count and
	// error_count on its health endpoint; zero if it never has (its
	// counts are then unknown, not zero).
	CountsAt Time `json:"counts_at,omitzero"`
	// HealthFailures counts consecutive failed health checks.
	HealthFailures int `json:"health_failures,omitzero"`
	// ListenerPID is the process found serving the port when it is not the
	// owner (orphaned ports, daemonized services).
	ListenerPID  int    `json:"listener_pid,omitzero"`
	ListenerName string `json:"listener_name,omitzero"`
	LastError    string `json:"last_error,omitzero"`
	// Container is set when the owner is a container (Docker, Podman): PID
	// is then its main process, 0 while it is stopped.
	Container *Container `json:"container,omitzero"`
	// DescendantMark and Descendants let the watchdog tell that a service
	// `gracectl run` launched lives on in processes it started, once the
	// owner has ended and run is gone (SIGKILLed, say, before it could
	// follow a daemon that has not bound yet): DescendantMark is the
	// SHA-256 (hex) of the random token run put in the service's
	// environment (GRACECTL_RUN_TOKEN), which every process the service
	// starts inherits; Descendants are the processes of the service run
	// saw. Such a process, alive, gets the port instead of its release.
	DescendantMark string       `json:"descendant_mark,omitzero"`
	Descendants    []Descendant `json:"descendants,omitempty"`

	// Unknown holds the fields gracectl does not know, kept as read and
	// written back after the known ones.
	Unknown jsontext.Value `json:",embed"`
}

// Container is the container an allocation belongs to. Its engine
// publishes the port (the listener is the engine's proxy), and is asked
// whether the container runs, restarted (a new main PID) or was removed.
type Container struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitzero"`
	Image  string `json:"image,omitzero"`
	Engine string `json:"engine,omitzero"` // "docker" or "podman"
	// Socket is the engine's API socket; only that engine is asked about it.
	Socket string `json:"socket,omitzero"`
	// UntilRemoved keeps the port for the container while it exists,
	// stopped or running (a detached `run -- docker run -d`, an adopted
	// container); otherwise the port is released when the container stops,
	// as for any owner that ends.
	UntilRemoved bool `json:"until_removed,omitzero"`
}

// NewContainer is the record of a container the engine described,
// its text made safe to store.
func NewContainer(in container.Info, untilRemoved bool) *Container {
	return &Container{ID: in.ID, Name: SafeText(in.Name, 128), Image: SafeText(in.Image, 256), Engine: in.Engine,
		Socket: in.Socket, UntilRemoved: untilRemoved}
}

// Label names the container: its name, else its short ID.
func (c *Container) Label() string {
	in := c.Info()
	return in.Label()
}

// Info is what the engine is asked about.
func (c *Container) Info() container.Info {
	return container.Info{ID: c.ID, Name: c.Name, Image: c.Image, Engine: c.Engine, Socket: c.Socket}
}

// Descendant is a process a service started, as `gracectl run` saw it.
type Descendant struct {
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pid_start"`
	PIDNS    uint64 `json:"pid_ns,omitzero"`
}

// MaxDescendants bounds the processes recorded per allocation.
const MaxDescendants = 32

// RunTokenEnv is the variable that carries `gracectl run`'s token into the
// service's environment (DescendantMark).
const RunTokenEnv = "GRACECTL_RUN_TOKEN"

// LiveDescendant finds a process the owner's service started that is
// still running, when the owner is not: one run recorded, else one that
// carries run's token in its environment (found through
// /proc/PID/environ, which shows only processes of this user, or all to
// root). The token cannot be forged by another user: only its hash is
// stored, and a process's environment is readable only by its own user.
// Of several, the one that started first.
func (a *Allocation) LiveDescendant() (probe.Identity, bool) {
	owner := a.Owner()
	var best probe.Identity
	for _, d := range a.Descendants {
		id := probe.Identity{PID: d.PID, Start: d.PIDStart, Boot: a.BootID, PIDNS: d.PIDNS}
		if id.PID != owner.PID && probe.Alive(id) && (best.PID == 0 || id.Start < best.Start) {
			best = id
		}
	}
	if best.PID == 0 && a.DescendantMark != "" {
		best, _ = probe.FindByEnv(RunTokenEnv, a.DescendantMark)
	}
	return best, best.PID != 0
}

// Reserved reports whether nobody has claimed the port yet.
func (a *Allocation) Reserved() bool { return a.PID <= 0 }

// Owner is the recorded owner process.
func (a *Allocation) Owner() probe.Identity {
	return probe.Identity{PID: int(a.PID), Start: a.PIDStart, Boot: a.BootID, PIDNS: a.PIDNS, NetNS: a.NetNS}
}

// Supervised reports whether the `gracectl run` that launched the owner
// still runs: it, not the watchdog, settles the port when the owner ends.
func (a *Allocation) Supervised() bool {
	if a.SupervisorPID <= 0 {
		return false
	}
	_, l := probe.Resolve(probe.Identity{PID: a.SupervisorPID, Start: a.SupervisorStart, Boot: a.BootID, PIDNS: a.SupervisorPIDNS})
	return l != probe.Dead
}

// SetOwner records id as the owner.
func (a *Allocation) SetOwner(id probe.Identity) {
	a.PID, a.PIDStart, a.BootID, a.PIDNS, a.NetNS = OwnerPID(id.PID), id.Start, id.Boot, id.PIDNS, id.NetNS
}

// Allocations are keyed by port number as a string, as in the seed; they are
// written in numeric order (json.go).
type Allocations map[string]*Allocation

// Registry is the whole registry file.
type Registry struct {
	Allocations Allocations `json:"allocations"`
	LastUpdated Time        `json:"last_updated,omitzero"`
	// AuditSeq is the sequence number of the last audit line written.
	AuditSeq uint64 `json:"audit_seq,omitzero"`
	// PendingAudit are the audit lines of the last change, exactly as they
	// are appended to the log: the next writer appends any the log lacks.
	PendingAudit []string `json:"pending_audit,omitempty"`
	// LastPorts remembers the port each service (and port name) held last
	// (lastports.go).
	LastPorts map[string]LastPort `json:"last_ports,omitempty"`

	// Unknown holds top-level fields gracectl does not know.
	Unknown jsontext.Value `json:",embed"`

	src []byte // the file's bytes this was parsed from, nil once changed
}

// Get returns the allocation for port, or nil.
func (r *Registry) Get(port int) *Allocation { return r.Allocations[strconv.Itoa(port)] }

// Put stores a under its port's key.
func (r *Registry) Put(a *Allocation) {
	if r.Allocations == nil {
		r.Allocations = Allocations{}
	}
	r.Allocations[strconv.Itoa(a.Port)] = a
}

// Delete removes port's allocation.
func (r *Registry) Delete(port int) { delete(r.Allocations, strconv.Itoa(port)) }

// Sorted returns the allocations ordered by port.
func (r *Registry) Sorted() []*Allocation {
	out := make([]*Allocation, 0, len(r.Allocations))
	for _, a := range r.Allocations {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y *Allocation) int { return x.Port - y.Port })
	return out
}

// OfService returns the allocations of a service, by port; with a port
// name, only that named port.
func (r *Registry) OfService(service, portName string) []*Allocation {
	var out []*Allocation
	for _, a := range r.Sorted() {
		if a.ServiceName == service && (portName == "" || a.PortName == portName) {
			out = append(out, a)
		}
	}
	return out
}

// Label is the service name with the port name, as reports show it:
// "grace_backend" or "grace_backend (admin)".
func (a *Allocation) Label() string { return Label(a.ServiceName, a.PortName) }

// Label names a service's port in messages: the service, with its port
// name if it has one: "api (admin)".
func Label(service, portName string) string {
	if portName == "" {
		return service
	}
	return service + " (" + portName + ")"
}

// EnvName is the environment variable that holds a service's port:
// SERVICE_PORT, or SERVICE_PORTNAME_PORT for a named port (EnvWord).
func EnvName(service, portName string) string {
	name := service
	if portName != "" {
		name += "_" + portName
	}
	w := EnvWord(name)
	if w != "" && w[0] >= '0' && w[0] <= '9' {
		w = "_" + w // a variable name cannot start with a digit
	}
	return w + "_PORT"
}

// EnvShadow is an allocation whose variable name (EnvName) another
// allocation, on a lower port, already has.
type EnvShadow struct {
	Name       string
	Kept, Lost *Allocation
}

// EnvPorts maps variable names (EnvName) to the allocations of services
// (every service when none is named): where two allocations give the same
// name, the lower port keeps it and the other is in shadowed. A service
// named that holds no port is an error.
func (r *Registry) EnvPorts(services []string) (vars map[string]*Allocation, shadowed []EnvShadow, err error) {
	want := map[string]bool{}
	for _, s := range services {
		if len(r.OfService(s, "")) == 0 {
			return nil, nil, fmt.Errorf("service %s holds no port", Quote(s))
		}
		want[s] = true
	}
	vars = map[string]*Allocation{}
	for _, a := range r.Sorted() { // by port: the lowest wins a name
		if len(want) > 0 && !want[a.ServiceName] {
			continue
		}
		name := EnvName(a.ServiceName, a.PortName)
		if first, ok := vars[name]; ok {
			shadowed = append(shadowed, EnvShadow{Name: name, Kept: first, Lost: a})
			continue
		}
		vars[name] = a
	}
	return vars, shadowed, nil
}

// EnvWord is s as part of an environment variable's name, one character
// for each character (rune) of s: A-Z and 0-9 as they are, other letters
// upper-cased with their accents dropped (ü → U, é → E: the first rune of
// the canonical decomposition), anything else _. "ünï☃" is "UNI_".
func EnvWord(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteByte(envChar(r))
	}
	return b.String()
}

func envChar(r rune) byte {
	if r >= utf8.RuneSelf {
		r, _ = utf8.DecodeRuneInString(norm.NFD.String(string(r)))
	}
	r = unicode.ToUpper(r)
	if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
		return byte(r)
	}
	return '_'
}

// Clone returns a deep copy, so probes can work on a snapshot while others
// change the registry.
func (a *Allocation) Clone() *Allocation {
	c := *a
	c.Command = slices.Clone(a.Command)
	c.Descendants = slices.Clone(a.Descendants)
	c.Unknown = slices.Clone(a.Unknown)
	if a.Container != nil {
		ctr := *a.Container
		c.Container = &ctr
	}
	return &c
}

// SameAs reports whether b is still the allocation a was taken from: the
// same port, owner and allocation time. The watchdog applies its findings
// only to allocations that pass this test.
func (a *Allocation) SameAs(b *Allocation) bool {
	return a.Port == b.Port && a.ID == b.ID && a.PID == b.PID && a.PIDStart == b.PIDStart && a.AllocatedAt.Equal(b.AllocatedAt.Time)
}

// OwnerPID is the PID of an allocation's owner; 0 is none (a reservation),
// written as null: the seed's readers expect every allocation to have the
// key.
type OwnerPID int
