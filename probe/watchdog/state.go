package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// StateFile holds the watchdog's persisted state, beside the registry.
const StateFile = "watchdog.json"

// DefaultInterval is the seed's watchdog interval.
const DefaultInterval = 30 * time.Second

// State is what a running watchdog records after every cycle.
type State struct {
	Running             bool          `json:"running"`
	PID                 int           `json:"pid,omitzero"`
	PIDStart            uint64        `json:"pid_start,omitzero"`
	BootID              string        `json:"boot_id,omitzero"`
	StartedAt           registry.Time `json:"started_at,omitzero"`
	StoppedAt           registry.Time `json:"stopped_at,omitzero"`
	IntervalSeconds     float64       `json:"check_interval_seconds"`
	ChecksPerformed     int64         `json:"checks_performed"`
	IssuesDetected      int64         `json:"issues_detected"`
	StaleCleaned        int64         `json:"stale_cleaned"`
	MonitoredPorts      int           `json:"monitored_ports"`
	LastCycleAt         registry.Time `json:"last_cycle_at,omitzero"`
	LastCycleDurationMS float64       `json:"last_cycle_duration_ms"`
	LastSummary         string        `json:"last_summary,omitzero"`
	API                 string        `json:"api,omitzero"`
	APIAccess           string        `json:"api_access,omitzero"` // "loopback", "remote, TLS and authentication", "remote, unauthenticated", …
	StartedBy           string        `json:"started_by,omitzero"` // "run": started by gracectl run
	// EventEpoch numbers this run of the watchdog among all runs for the
	// registry (Watcher.Epoch).
	EventEpoch uint64 `json:"event_epoch,omitzero"`
	// Portserver is where `watch --portserver` listens.
	Portserver string `json:"portserver,omitzero"`
	// Routes is where `watch --routes` keeps the services' routes.
	Routes *Routes `json:"routes,omitzero"`
}

// Routes is the reverse proxy `watch --routes` keeps in step with the
// registry (docs/routes.md).
type Routes struct {
	Proxy  string `json:"proxy"`  // caddy://HOST:PORT or nginx:PATH
	Domain string `json:"domain"` // the services' names are under it
	Listen string `json:"listen"` // where the proxy serves them
}

// StatePath is the watchdog state file of store's registry.
func StatePath(store *registry.Store) string { return filepath.Join(store.Dir(), StateFile) }

// LockPath is held by a running watchdog for its whole life, so there is
// at most one per registry.
func LockPath(store *registry.Store) string { return StatePath(store) + ".lock" }

// SaveState writes the watchdog state atomically.
func SaveState(store *registry.Store, st *State) error {
	b, err := registry.MarshalIndented(st)
	if err != nil {
		return err
	}
	if err := store.EnsureDir(); err != nil {
		return err
	}
	path := StatePath(store)
	perm := store.FileMode()
	info, _ := os.Lstat(path)
	if info != nil && info.Mode().IsRegular() {
		perm = info.Mode().Perm()
	} else {
		info = nil
	}
	return registry.WriteFileAtomic(path, b, perm, info)
}

// LoadState reads the persisted state and says whether the watchdog runs,
// as the kernel tells it (Running): never because the file says so. When
// the file is not the running watchdog's own (it has not written one yet,
// or someone else wrote it), only what the kernel says is shown. A
// watchdog whose last cycle is more than two intervals (and a margin) old
// is hung, and shown as not running.
func LoadState(store *registry.Store) (*State, error) {
	st, err := readState(store)
	if err != nil {
		return nil, err
	}
	id, ok, err := Running(store)
	if err != nil {
		return nil, err
	}
	st.Running = false
	if !ok {
		return st, nil
	}
	if st.PID != id.PID || st.PIDStart != id.Start {
		st = &State{IntervalSeconds: DefaultInterval.Seconds(), PID: id.PID, PIDStart: id.Start, BootID: id.Boot}
	}
	st.Running = st.fresh(time.Now())
	return st, nil
}

// readState reads the state file as it is (a missing one is the empty
// state), believing nothing in it.
func readState(store *registry.Store) (*State, error) {
	st := &State{IntervalSeconds: DefaultInterval.Seconds()}
	path := StatePath(store)
	b, _, err := registry.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := registry.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("watchdog state %s is not valid: %v", path, err)
	}
	return st, nil
}

// fresh reports whether the watchdog's last cycle (or its start, before
// the first) is recent: within two intervals and a margin.
func (st *State) fresh(now time.Time) bool {
	interval := time.Duration(st.IntervalSeconds * float64(time.Second))
	last := st.LastCycleAt.Time
	if last.IsZero() {
		last = st.StartedAt.Time
	}
	return last.IsZero() || now.Sub(last) <= 2*interval+30*time.Second
}

// Status is the document that `gracectl status --json` prints and that
// GET /api/ports/status returns: the registry and the watchdog's state.
type Status struct {
	Registry     string                 `json:"registry"`
	Range        registry.Range         `json:"port_range"`
	TotalPorts   int                    `json:"total_ports"`
	Allocated    int                    `json:"allocated"`     // allocations inside the range
	OutsideRange int                    `json:"outside_range"` // allocations outside it (listed all the same)
	Available    int                    `json:"available"`     // neither allocated, held elsewhere nor listened on
	Allocations  []*registry.Allocation `json:"allocations"`
	Unmanaged    []Unmanaged            `json:"unmanaged"` // listeners in the range without an allocation
	// HeldElsewhere are the ports of the range the host registry holds,
	// seen from a private or project registry: allocate here skips them.
	HeldElsewhere []registry.Held `json:"held_elsewhere"`
	Watchdog      *State          `json:"watchdog"`
	// KernelReserved says whether the kernel keeps the range from
	// outgoing connections (gracectl init --reserve).
	KernelReserved KernelReserve `json:"kernel_reserved"`
	// Warnings say what could not be read (the host registry, say).
	Warnings []string `json:"warnings,omitzero"`
}

// KernelReserve says whether the kernel's reserved ports
// (net.ipv4.ip_local_reserved_ports, of this network namespace) hold the
// managed range: then no outgoing connection and no bind to port 0 takes
// one of its ports.
type KernelReserve struct {
	Range    registry.Range `json:"range"`
	Reserved string         `json:"reserved"` // "yes", "partly", "no", or "unknown" (the list cannot be read, as off Linux)
	Ports    int            `json:"ports"`    // how many ports of the range the list holds
	List     string         `json:"list"`     // the kernel's list as read, "8000-8100,9090"
}

// ReadKernelReserve reads the kernel's reserved ports for rg.
func ReadKernelReserve(rg registry.Range) KernelReserve {
	l, err := probe.ReservedPorts()
	if err != nil {
		return KernelReserve{Range: rg, Reserved: "unknown"}
	}
	k := KernelReserve{Range: rg, Ports: l.Covered(probe.PortSpan{Lo: rg.Start, Hi: rg.End}), List: l.String()}
	switch k.Ports {
	case rg.Size():
		k.Reserved = "yes"
	case 0:
		k.Reserved = "no"
	default:
		k.Reserved = "partly"
	}
	return k
}

// ReadStatus reads the registry and the watchdog state. Allocated counts
// the allocations inside rg; allocations outside it are listed all the same
// and counted in OutsideRange. Unmanaged listeners that are a container
// engine's proxy are named with their container when eng (which may be nil)
// can ask the engine.
func ReadStatus(ctx context.Context, store *registry.Store, rg registry.Range, eng *container.Engines) (*Status, error) {
	r, err := store.Read(ctx)
	if err != nil {
		return nil, err
	}
	wd, err := LoadState(store)
	if err != nil {
		return nil, err
	}
	held, herr := store.HeldElsewhere(ctx, rg)
	st := BuildStatus(store.Path(), rg, r, wd, FindUnmanaged(ctx, probe.TakeSnapshot(), rg, r, eng.Lookup()), held)
	if herr != nil {
		st.Warnings = append(st.Warnings, ElsewhereWarning(herr))
	}
	return st, nil
}

// ElsewhereWarning says that another registry of the host could not be
// read, so its ports are not known here.
func ElsewhereWarning(err error) string {
	return "the ports of the host registry are not known here: " + registry.PlainText(err)
}

// BuildStatus assembles the status document from a registry snapshot, the
// unmanaged listeners found in the range and the ports other registries
// hold (a listener on one of those is theirs, not unmanaged).
func BuildStatus(path string, rg registry.Range, r *registry.Registry, wd *State, unmanaged []Unmanaged, held []registry.Held) *Status {
	unmanaged = withoutHeld(unmanaged, held)
	st := &Status{Registry: path, Range: rg, TotalPorts: rg.Size(), Allocations: r.Sorted(), Watchdog: wd,
		Unmanaged: unmanaged, HeldElsewhere: held, KernelReserved: ReadKernelReserve(rg)}
	if st.Unmanaged == nil {
		st.Unmanaged = []Unmanaged{}
	}
	if st.HeldElsewhere == nil {
		st.HeldElsewhere = []registry.Held{}
	}
	for _, a := range st.Allocations {
		if rg.Contains(a.Port) {
			st.Allocated++
		} else {
			st.OutsideRange++
		}
	}
	st.Available = st.TotalPorts - st.Allocated - len(unmanaged)
	for _, h := range held {
		if r.Get(h.Port) == nil {
			st.Available-- // held twice is counted once, here
		}
	}
	return st
}

// withoutHeld drops the listeners on ports another registry holds: they
// are managed, there.
func withoutHeld(u []Unmanaged, held []registry.Held) []Unmanaged {
	if len(held) == 0 {
		return u
	}
	return slices.DeleteFunc(u, func(x Unmanaged) bool {
		return slices.ContainsFunc(held, func(h registry.Held) bool { return h.Port == x.Port })
	})
}
