// Package watchdog is the watchdog cycle: it probes every allocation (owner
// alive, port listening, health endpoint), decides each one's health_status,
// and applies the results and the cleanup of dead services to the registry.
//
// Probes run without the registry lock, so a slow endpoint never blocks
// `gracectl allocate`. Those that wait on the network (a health endpoint, or
// a connect where /proc cannot be read) run in parallel with bounded
// concurrency, so one hanging endpoint never delays the others; the rest
// are lookups in the cycle's snapshots of /proc. Results are applied under the
// lock, and only to allocations that are still the ones probed (same port,
// owner and allocation time): a port released or re-allocated while the
// cycle ran is left as it now is. No process is ever signalled.
package watchdog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// Defaults, as documented in docs/health-status.md.
const (
	DefaultStartupGrace     = 60 * time.Second
	DefaultUnhealthyAfter   = 3
	DefaultReservationLease = 5 * time.Minute
	DefaultConcurrency      = 128
)

// Options tune a cycle.
type Options struct {
	HealthTimeout    time.Duration // one health check (default 2 s)
	StartupGrace     time.Duration // alive but not listening is "starting" this long after registration
	UnhealthyAfter   int           // consecutive health failures before "unhealthy"
	ReservationLease time.Duration // unclaimed reservations are released after this
	Concurrency      int           // probes in flight at once
	DryRun           bool          // report, change nothing
	// Range is the managed range, where listeners without an allocation
	// are reported (none are looked for when it is zero).
	Range registry.Range
	// Ports, if set, limits the cycle to these allocations (the watcher's
	// check of an owner that just exited); unmanaged listeners are then
	// not looked for.
	Ports []int
	// Engines, if set, are the container engines asked about containers
	// that own ports and about listeners that are an engine's proxy
	// (nil: containers are seen as the processes holding their ports).
	Engines *container.Engines
}

func (o *Options) fill() {
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = probe.DefaultHealthTimeout
	}
	if o.StartupGrace <= 0 {
		o.StartupGrace = DefaultStartupGrace
	}
	if o.UnhealthyAfter <= 0 {
		o.UnhealthyAfter = DefaultUnhealthyAfter
	}
	if o.ReservationLease <= 0 {
		o.ReservationLease = DefaultReservationLease
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
}

// Result is what one cycle found for one allocation. It is the row of
// `gracectl check` and an element of its --json output.
type Result struct {
	Port         int    `json:"port"`
	Service      string `json:"service_name"`
	PortName     string `json:"port_name,omitzero"`
	PID          int    `json:"pid,omitzero"`
	Process      string `json:"process,omitzero"`
	Alive        bool   `json:"alive"`
	Listening    bool   `json:"listening"`
	NetNS        uint64 `json:"listening_in_net_ns,omitzero"` // the owner's network namespace, when not the watchdog's
	ListenerPIDs []int  `json:"listener_pids,omitempty"`
	// Container is the container that owns the port, as its engine
	// describes it now.
	Container    *container.Info `json:"container,omitzero"`
	Health       string          `json:"health"` // "ok", "failing: …", "none" (no path), "skipped"
	Status       string          `json:"health_status"`
	Issue        string          `json:"issue,omitzero"`
	LastCheck    registry.Time   `json:"last_check"`
	RequestCount int64           `json:"request_count"`
	ErrorCount   int64           `json:"error_count"`
	Action       string          `json:"action,omitzero"` // "released", "would release", "owner now pid N, …", "skipped: changed during the cycle"

	verdict Verdict              // what apply writes
	probed  *registry.Allocation // the allocation as it was probed
}

// Report is one cycle's outcome.
type Report struct {
	StartedAt  registry.Time `json:"started_at"`
	DurationMS float64       `json:"duration_ms"`
	DryRun     bool          `json:"dry_run"`
	Results    []*Result     `json:"results"`
	Active     int           `json:"active"`
	Dead       int           `json:"dead"`
	Issues     int           `json:"issues"`
	Released   []int         `json:"released"`
	// Ended are the released ports whose owner ended as expected (a
	// portserver client that exited): ordinary releases, not cleanups.
	Ended []int `json:"ended"`
	// Unmanaged are listeners in the managed range without an allocation;
	// each counts as an issue.
	Unmanaged []Unmanaged `json:"unmanaged"`
	// HeldElsewhere are the ports of the range the host registry holds,
	// seen from a private or project registry: not issues, and not
	// unmanaged when something listens on them.
	HeldElsewhere []registry.Held `json:"held_elsewhere"`
	// Warnings say what could not be read (the host registry, say).
	Warnings []string `json:"warnings,omitzero"`
	// NewIssues counts the issues that were not there at the watchdog's
	// cycle before (all of them for a one-off check).
	NewIssues int `json:"new_issues"`
	// KernelReserved says whether the kernel keeps the range from
	// outgoing connections; absent for a cycle over some ports only.
	KernelReserved *KernelReserve `json:"kernel_reserved,omitzero"`
}

// ActionChanged is a Result's Action when the allocation changed between
// the cycle's probe and its change (another process or a watchdog event
// got there first): nothing was done to it.
const ActionChanged = "skipped: changed during the cycle"

// Cleaned counts the ports released as cleanups: dead services and stale
// reservations, not the portserver clients that exited.
func (r *Report) Cleaned() int { return len(r.Released) - len(r.Ended) }

// Summary is the seed's health-check line.
func (r *Report) Summary() string {
	return fmt.Sprintf("Health check: %d active, %d dead, %d issues", r.Active, r.Dead, r.Issues)
}

// Cycle runs one watchdog cycle over store.
func Cycle(ctx context.Context, store *registry.Store, opts Options) (*Report, error) {
	opts.fill()
	start := time.Now()
	rep := &Report{StartedAt: registry.Now(), DryRun: opts.DryRun, Released: []int{}, Ended: []int{}, Unmanaged: []Unmanaged{}, HeldElsewhere: []registry.Held{}}
	reg, err := store.Read(ctx)
	if err != nil {
		return nil, err
	}
	var allocs []*registry.Allocation
	for _, a := range reg.Sorted() {
		if opts.Ports == nil || slices.Contains(opts.Ports, a.Port) {
			allocs = append(allocs, a.Clone())
		}
	}
	socks := probe.TakeSnapshot()
	procs := probe.TakeProcessTable()
	ports := make([]int, len(allocs))
	for i, a := range allocs {
		ports[i] = a.Port
	}
	owners := socks.OwnersOf(ports) // one pass over /proc/*/fd for all of them
	lk := opts.Engines.Lookup()     // nil: engines are not asked
	lk.Published(ctx)               // asked once, before the probes run in parallel
	if opts.Range.Start > 0 && opts.Ports == nil {
		held, err := store.HeldElsewhere(ctx, opts.Range)
		if err != nil {
			rep.Warnings = append(rep.Warnings, ElsewhereWarning(err))
		}
		if held != nil {
			rep.HeldElsewhere = held
		}
		if u := withoutHeld(FindUnmanaged(ctx, socks, opts.Range, reg, lk), held); len(u) > 0 {
			rep.Unmanaged = u
		}
		k := ReadKernelReserve(opts.Range)
		rep.KernelReserved = &k
	}

	rep.Results = probeAll(ctx, allocs, socks, owners, procs, lk, opts)

	if opts.DryRun {
		rep.wouldApply()
	} else if err := apply(ctx, store, reg, rep); err != nil {
		return nil, err
	}
	rep.count()
	rep.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return rep, nil
}

// probeAll probes allocs: at once those that wait on nothing, the others
// in parallel, opts.Concurrency at a time.
func probeAll(ctx context.Context, allocs []*registry.Allocation, socks *probe.Snapshot, owners map[int][]int,
	procs *probe.ProcessTable, lk *container.Lookup, opts Options) []*Result {
	results := make([]*Result, len(allocs))
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for i, a := range allocs {
		if !waitsOnNetwork(a, socks, owners[a.Port], lk) {
			// Probed here (at thousands of allocations, a goroutine
			// each cost a tenth of the cycle).
			results[i] = probeOne(ctx, a, socks.Listening(ctx, a.Port), owners[a.Port], procs, lk, opts)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Off Linux, Listening connects; it runs here, in parallel.
			results[i] = probeOne(ctx, a, socks.Listening(ctx, a.Port), owners[a.Port], procs, lk, opts)
		}()
	}
	wg.Wait()
	return results
}

// wouldApply says, in a dry run, what apply would have done.
func (r *Report) wouldApply() {
	for _, res := range r.Results {
		if res.verdict.Release != "" {
			res.Action = "would release (" + res.verdict.Release + ")"
		}
		if res.verdict.Heir {
			res.Action = fmt.Sprintf("would make pid %d, which the service started, the owner", res.verdict.Owner.PID)
		}
	}
}

// count fills the report's totals from its results.
func (r *Report) count() {
	for _, res := range r.Results {
		switch res.Status {
		case registry.StatusActive:
			r.Active++
		case registry.StatusDead:
			r.Dead++
		}
		if res.Issue != "" {
			r.Issues++
		}
	}
	r.Issues += len(r.Unmanaged)
	r.NewIssues = r.Issues
}

// waitsOnNetwork reports whether probing a may wait on another program: a
// health endpoint, a connect where /proc cannot be read, or a container
// engine asked about its container or about a listener on its port.
func waitsOnNetwork(a *registry.Allocation, socks *probe.Snapshot, listeners []int, lk *container.Lookup) bool {
	return a.HealthPath != "" || !socks.FromTables() || (lk != nil && (a.Container != nil || len(listeners) > 0))
}

// Observation is what one cycle saw of one allocation. It decides nothing:
// decide does.
type Observation struct {
	Alive bool // the owner's PID exists with its recorded start time and boot
	// OwnerUnknown: the owner's PID namespace cannot be looked into from
	// here, so whether it runs is not known.
	OwnerUnknown bool
	// OtherNetNS is the owner's network namespace when it is not the
	// watchdog's and the port was looked for there (0 otherwise).
	OtherNetNS uint64
	// Supervised: the `gracectl run` that launched the owner still runs,
	// and settles the port itself when the owner ends.
	Supervised bool
	// Heir is a process the owner's service started that lives on when
	// the owner has ended and its gracectl run is gone
	// (Allocation.LiveDescendant); PID 0 when there is none.
	Heir      probe.Identity
	Process   string // the owner's process name, when alive
	Listening bool   // a LISTEN socket exists for the port
	Listeners []int  // the processes holding it, where /proc shows them
	// Foreign is the first listener that is neither the owner nor one of
	// its descendants (0: none, or unknown).
	Foreign     int
	ForeignName string
	// Health is the health endpoint's answer; nil when not asked (no
	// health path, or the owner is not alive and listening).
	Health *probe.HealthResult
	// Container is what the engine says of the container that owns the
	// port (nil: no container owns it, or its engine cannot be asked).
	// Alive then means the container runs.
	Container *container.State
	// NewOwner is the container's main process when it is not the one
	// recorded (it restarted).
	NewOwner *probe.Identity
	// ForeignContainer names the container whose engine's proxy is the
	// Foreign listener.
	ForeignContainer *container.Info
	// NATContainer is another container than the owner's that publishes
	// the port through NAT rules alone (no foreign listener): connections
	// to the port may reach it instead of the owner.
	NATContainer *container.Info
}

// Verdict is what the rules make of an observation: the allocation's new
// state, and whether it is to be released.
type Verdict struct {
	Status  string // a registry.Status* word
	Health  string // "ok", "failing (n/m): …", "none" (no path), "skipped"
	Issue   string // empty when all is well
	Release string // the release reason, when the port is to be released
	// Ended: the owner ended as this kind of allocation expects (a
	// portserver client exited), so the release is an ordinary one:
	// neither an issue nor a cleanup.
	Ended        bool
	Failures     int // consecutive failed health checks
	LastError    string
	Counts       bool // RequestCount and ErrorCount come from the service
	RequestCount int64
	ErrorCount   int64
	ListenerPID  int
	ListenerName string
	// Owner, if set, is the allocation's new owner: a container's new main
	// process, or none (PID 0) while a container kept until removed is
	// stopped. OwnerReason says why, for the audit log.
	Owner       *probe.Identity
	OwnerReason string
	// Heir: Owner is a process the owner's service started, which lives on
	// after the owner and its gracectl run ended (Observation.Heir).
	Heir bool
}

// observe looks at one allocation; it touches no shared state and changes
// nothing. The health endpoint is asked only when the owner is alive and
// the port listening: otherwise there is no one to answer.
func observe(ctx context.Context, a *registry.Allocation, listening bool, listeners []int, procs *probe.ProcessTable, lk *container.Lookup, opts Options) Observation {
	ob := Observation{Listening: listening, Listeners: listeners}
	local := 0 // the owner's PID in this view
	if a.PID > 0 {
		var l probe.Liveness
		local, l = procs.Resolve(a.Owner())
		ob.Alive, ob.OwnerUnknown = l == probe.Running, l == probe.Unknown
		if ob.Alive {
			ob.Process = procs.Name(local)
		}
	}
	if a.Container != nil && lk != nil {
		local = ob.askEngine(ctx, a, local, procs, lk)
	}
	if !ob.Alive {
		ob.Supervised = a.Supervised()
		// A run's reservation (it carries the run's mark) may have an heir
		// too: run killed before it registered its command. A container's
		// heir is no process: its engine's helpers carry its run's token
		// too.
		if !ob.Supervised && !ob.OwnerUnknown && (!a.Reserved() || a.DescendantMark != "") && a.Container == nil {
			ob.Heir, _ = a.LiveDescendant()
		}
	}
	// An owner in another network namespace listens where this watchdog's
	// socket table cannot see: look in its own.
	if _, selfNet := probe.SelfNamespaces(); ob.Alive && a.NetNS != 0 && selfNet != 0 && a.NetNS != selfNet {
		if l, err := probe.ListeningInOwnNetNS(local, a.Port); err == nil {
			ob.Listening, ob.Listeners, ob.OtherNetNS = l, nil, a.NetNS
		}
	}
	for _, pid := range ob.Listeners {
		if local > 0 && ob.Alive && procs.IsDescendant(pid, local) || ob.servedForContainer(a, pid, procs) {
			continue
		}
		ob.Foreign, ob.ForeignName = pid, procs.Name(pid)
		ob.ForeignContainer = lk.Publisher(ctx, a.Port, pid)
		break
	}
	if in, ok := lk.Published(ctx)[a.Port]; ok && ob.Foreign == 0 && (a.Container == nil || a.Container.ID != in.ID) {
		ob.NATContainer = &in
	}
	if ob.Alive && ob.Listening && ob.OtherNetNS == 0 && a.HealthPath != "" {
		h := probe.CheckHealth(ctx, a.Port, a.HealthPath, opts.HealthTimeout)
		ob.Health = &h
	}
	return ob
}

// askEngine asks the engine of the container that owns a whether it runs,
// and under which main process; it returns the owner's PID in this view.
// When the engine cannot be asked, what the PID rules saw stands.
func (ob *Observation) askEngine(ctx context.Context, a *registry.Allocation, local int, procs *probe.ProcessTable, lk *container.Lookup) int {
	// A rootless engine serves the user its containers run as: the user of
	// the container's main process or, while that is gone (the container
	// stopped, or started again under a PID not recorded yet), of an
	// engine's proxy listening on the port.
	uid := container.OwnUID()
	if u, ok := probe.ProcessUID(local); ok && ob.Alive {
		uid = u
	} else {
		for _, pid := range ob.Listeners {
			if u, ok := probe.ProcessUID(pid); ok && container.IsProxy(procs.Name(pid)) {
				uid = u
				break
			}
		}
	}
	st, err := lk.Engines().State(ctx, a.Container.Info(), uid)
	if err != nil {
		return local
	}
	ob.Container, ob.OwnerUnknown = st, false
	ob.Alive, ob.Process = st.Running, ""
	if st.Running && st.Publishes(a.Port) && st.NATHere && !ob.Listening {
		// Published through NAT alone (root's engine in this network
		// namespace, with no process holding the port): no socket
		// listens here, yet the port is the container's.
		ob.Listening = true
	}
	switch {
	case !st.Running:
		return 0
	case st.PID == 0:
		return 0 // running, but its PID is of another namespace
	case st.PID != local:
		if id, err := probe.IdentifyHere(st.PID); err == nil {
			ob.NewOwner = &id
		}
	}
	ob.Process = procs.Name(st.PID)
	return st.PID
}

// servedForContainer reports whether listener pid is the proxy of the
// engine publishing the port for a's container: its own, not a foreign
// listener. Without an answer from the engine, a proxy is taken to be its.
func (ob *Observation) servedForContainer(a *registry.Allocation, pid int, procs *probe.ProcessTable) bool {
	if a.Container == nil || !container.IsProxy(procs.Name(pid)) {
		return false
	}
	return ob.Container == nil || !ob.Container.Running || ob.Container.Publishes(a.Port)
}

// decide applies the rules of docs/health-status.md to one allocation and
// what was seen of it at now. It is a pure function: TestDecide has a row
// for every row of that document.
func decide(a *registry.Allocation, ob Observation, now time.Time, opts Options) Verdict {
	v := Verdict{Health: "none", Failures: a.HealthFailures, RequestCount: a.RequestCount, ErrorCount: a.ErrorCount}
	if ob.Foreign != 0 {
		v.ListenerPID, v.ListenerName = ob.Foreign, ob.ForeignName
	}
	describe := ob.describe
	if ob.NewOwner != nil {
		v.Owner = ob.NewOwner
		v.OwnerReason = fmt.Sprintf("container %s runs under a new main process (it restarted)", a.Container.Label())
	}
	switch {
	case a.Container != nil && ob.Container == nil && a.Reserved():
		// A stopped container kept until removed, whose engine cannot be
		// asked now: no lease runs out on it.
		v.Status, v.Health = registry.StatusReserved, "skipped: the container engine cannot be asked"
	case a.Container != nil && a.Container.UntilRemoved && ob.Container == nil && !ob.Alive && !ob.OwnerUnknown:
		// Its main process ended and its engine cannot be asked (it is
		// down, or a rootless engine, which only its own user believes
		// once none of its processes runs): whether the container was
		// removed is not known, so it is kept as a stopped one is.
		v.Status, v.Health = registry.StatusReserved, "skipped: the container engine cannot be asked"
		v.Owner = &probe.Identity{}
		v.OwnerReason = fmt.Sprintf("container %s: main pid %d is gone and its engine cannot be asked; its port is kept until it is removed", a.Container.Label(), a.PID)
	case ob.Container != nil && !ob.Container.Running:
		containerDown(&v, a, ob)
	case a.Reserved() && ob.Container == nil && ob.Heir.PID == 0:
		v.Status, v.Health = registry.StatusReserved, "skipped"
		// A reservation whose supervisor lives (the portserver's pool,
		// held by the watchdog) has no lease.
		// One without allocated_at has no lease to count: it is stale.
		if age := now.Sub(a.AllocatedAt.Time); !ob.Listening && !ob.Supervised && (age > opts.ReservationLease || a.AllocatedAt.IsZero()) {
			v.Issue = fmt.Sprintf("stale reservation: never claimed, its %s lease ran out (allocated %s)", opts.ReservationLease, a.AllocatedAt.Ago(now))
			v.Release = v.Issue
		}
	case ob.OwnerUnknown && ob.Listening:
		// The owner cannot be verified, but its port is in use: never
		// released on PID evidence alone.
		v.Status, v.Health = registry.StatusActive, "skipped"
	case ob.OwnerUnknown:
		since := a.RegisteredAt.Time
		if since.IsZero() {
			since = a.AllocatedAt.Time
		}
		v.Status, v.Health = registry.StatusNotListening, "skipped"
		v.Issue = fmt.Sprintf("unverifiable owner: pid %d is in a PID namespace this watchdog cannot look into, and the port is not listening", a.PID)
		if now.Sub(since) > opts.ReservationLease {
			v.Release = fmt.Sprintf("owner pid %d cannot be verified (another PID namespace) and the port has not listened for over %s", a.PID, opts.ReservationLease)
		}
	case !ob.Alive && ob.Heir.PID != 0:
		// The owner ended and its gracectl run is gone, but a process the
		// service started lives on (a daemon that has not bound yet, or
		// the one that has): the port is its, not free.
		v.Status, v.Health = registry.StatusStarting, "skipped"
		if ob.Listening {
			v.Status = registry.StatusActive
		}
		h := ob.Heir
		v.Owner, v.OwnerReason, v.Heir = &h, heirReason(a, h), true
	case !ob.Alive && !ob.Listening && ob.Supervised:
		// The owner ended, but the gracectl run that launched it lives:
		// it hands the port to a descendant or releases it.
		v.Status, v.Health = registry.StatusStarting, "skipped"
	case !ob.Alive && !ob.Listening && a.HandedOut():
		// A portserver client that exited: the protocol's end of a port.
		v.Status, v.Health = a.HealthStatus, "skipped"
		v.Release, v.Ended = "the client exited", true
	case !ob.Alive && ob.Listening:
		v.Status, v.Health = registry.StatusOrphaned, "skipped"
		v.Issue = fmt.Sprintf("orphaned: owner pid %d is gone, %s still listens", a.PID, describe(ob.Foreign, ob.ForeignName))
	case !ob.Alive:
		v.Status, v.Health = registry.StatusDead, "skipped"
		v.Issue = fmt.Sprintf("crashed process: owner pid %d is gone", a.PID)
		v.Release = fmt.Sprintf("owner pid %d is gone", a.PID)
	case !ob.Listening:
		v.Health = "skipped"
		since := a.RegisteredAt.Time
		if since.IsZero() {
			since = a.AllocatedAt.Time
		}
		switch {
		case now.Sub(since) <= opts.StartupGrace:
			v.Status = registry.StatusStarting
		case a.HandedOut():
			// portpicker's clients hold ports for later, or for children.
			v.Status = registry.StatusNotListening
		default:
			v.Status = registry.StatusNotListening
			v.Issue = "non-responsive port: owner alive but not listening"
		}
	default:
		v.Status = registry.StatusActive
		if ob.OtherNetNS != 0 {
			v.Health = fmt.Sprintf("skipped: listens in network namespace %d", ob.OtherNetNS)
		}
		if ob.Health != nil {
			v.health(ob.Health, opts.UnhealthyAfter)
		}
		if ob.Foreign != 0 && v.Issue == "" {
			v.Issue = fmt.Sprintf("port served by %s, which is not the owner (pid %d) or its child", describe(ob.Foreign, ob.ForeignName), a.PID)
		}
	}
	if c := ob.NATContainer; c != nil && v.Issue == "" && v.Release == "" {
		v.Issue = fmt.Sprintf("port also published by %s through NAT rules alone: connections to it may reach the container, not the owner", c.Describe())
	}
	return v
}

// describe names the process pid (called name), and the container it
// serves when it is the foreign listener of a container's port.
func (ob *Observation) describe(pid int, name string) string {
	var who string
	switch {
	case pid == 0:
		return "an unknown process"
	case name != "":
		who = fmt.Sprintf("pid %d (%s)", pid, name)
	default:
		who = fmt.Sprintf("pid %d", pid)
	}
	if c := ob.ForeignContainer; c != nil && pid == ob.Foreign {
		return c.Describe() + " through " + who
	}
	return who
}

// health is decide for an active service's health check h: the counts it
// reported, and unhealthy after unhealthyAfter failures in a row.
func (v *Verdict) health(h *probe.HealthResult, unhealthyAfter int) {
	if h.RequestCount != nil {
		v.RequestCount, v.Counts = *h.RequestCount, true
	}
	if h.ErrorCount != nil {
		v.ErrorCount, v.Counts = *h.ErrorCount, true
	}
	if h.OK {
		v.Health, v.Failures = "ok", 0
		return
	}
	v.Failures++
	v.LastError = h.Err
	v.Health = fmt.Sprintf("failing (%d/%d): %s", v.Failures, unhealthyAfter, h.Err)
	if v.Failures >= unhealthyAfter {
		v.Status = registry.StatusUnhealthy
		v.Issue = fmt.Sprintf("failed health check: %s, %d times in a row", h.Err, v.Failures)
	}
}

// containerDown is decide for a container that is not running: its run
// settles it, a restart policy brings it back, a container kept until
// removed keeps its port with no owner process, and otherwise its port is
// released as a dead owner's.
func containerDown(v *Verdict, a *registry.Allocation, ob Observation) {
	st, name := ob.Container, a.Container.Label()
	v.Health = "skipped"
	switch {
	case ob.Supervised:
		v.Status = registry.StatusStarting // the gracectl run that started it settles the port
	case st.Restarting:
		v.Status = registry.StatusStarting
		v.Health = fmt.Sprintf("skipped: container %s is restarting", name)
	case st.Exists && a.Container.UntilRemoved:
		v.Status = registry.StatusReserved
		v.Health = fmt.Sprintf("skipped: container %s is stopped; its port is kept until it is removed", name)
		if a.PID > 0 {
			v.Owner = &probe.Identity{}
			v.OwnerReason = fmt.Sprintf("container %s stopped (exit status %d); its port is kept until it is removed", name, st.ExitCode)
		}
	case st.Exists:
		v.Status = registry.StatusDead
		v.Release = fmt.Sprintf("container %s exited with status %d", name, st.ExitCode)
		v.Issue = "container stopped: " + v.Release
	default:
		v.Status = registry.StatusDead
		v.Release = fmt.Sprintf("container %s was removed", name)
		v.Issue = "container gone: " + v.Release
	}
}

// probeOne observes one allocation and decides on it.
func probeOne(ctx context.Context, a *registry.Allocation, listening bool, listeners []int, procs *probe.ProcessTable, lk *container.Lookup, opts Options) *Result {
	ob := observe(ctx, a, listening, listeners, procs, lk, opts)
	v := decide(a, ob, time.Now(), opts)
	now := registry.Now()
	r := &Result{
		Port: a.Port, Service: a.ServiceName, PortName: a.PortName, PID: int(a.PID), Process: ob.Process, Alive: ob.Alive,
		Listening: ob.Listening, NetNS: ob.OtherNetNS, ListenerPIDs: ob.Listeners, Health: v.Health, Status: v.Status, Issue: v.Issue,
		LastCheck: now, RequestCount: v.RequestCount, ErrorCount: v.ErrorCount,
		verdict: v, probed: a,
	}
	if v.Owner != nil {
		r.PID = v.Owner.PID
	}
	if a.Container != nil {
		in := a.Container.Info()
		if st := ob.Container; st != nil {
			in = st.Info
		}
		r.Container = &in
	}
	return r
}

// apply writes the results under the lock, to allocations that are still
// the ones probed, and releases the dead and the stale. read is the
// registry the cycle read: unless the file changed since, it is not parsed
// again. A change of statuses alone is not fsynced (Tx.Derived).
func apply(ctx context.Context, store *registry.Store, read *registry.Registry, rep *Report) error {
	if len(rep.Results) == 0 {
		return nil
	}
	return store.UpdateFrom(ctx, read, func(reg *registry.Registry, tx *registry.Tx) error {
		tx.Derived() // statuses: the next cycle finds them again; releases are logged, so durable
		for _, r := range rep.Results {
			cur := reg.Get(r.Port)
			if cur == nil || !cur.SameAs(r.probed) {
				r.Action = ActionChanged
				r.verdict.Release = ""
				continue
			}
			v := r.verdict
			if v.Release != "" {
				tx.Release(reg, cur, "watchdog", "", v.Release)
				r.Action = "released"
				rep.Released = append(rep.Released, r.Port)
				if v.Ended {
					rep.Ended = append(rep.Ended, r.Port)
				}
				continue
			}
			if v.Heir {
				cur.HealthFailures = 0
				r.Action = fmt.Sprintf("owner now pid %d, which the service started", v.Owner.PID)
				r.PID = v.Owner.PID
			}
			cur.LastHealthCheck = r.LastCheck
			cur.HealthStatus = v.Status
			cur.HealthFailures = v.Failures
			cur.LastError = v.LastError
			if v.Counts {
				cur.RequestCount, cur.ErrorCount = v.RequestCount, v.ErrorCount
				cur.CountsAt = r.LastCheck
			}
			cur.ListenerPID, cur.ListenerName = v.ListenerPID, registry.SafeText(v.ListenerName, 64)
			if v.Owner != nil {
				prev := cur.PID
				cur.SetOwner(*v.Owner)
				cur.RegisteredAt = r.LastCheck
				tx.Log(&registry.RegisterEvent{Timestamp: tx.Now(), Action: "register", Port: cur.Port, ServiceName: cur.ServiceName,
					PID: int(cur.PID), PreviousPID: int(prev), Reason: v.OwnerReason, Container: cur.Container})
			}
		}
		return nil
	})
}

// CountsKnown reports whether the service has reported its request and
// error counts on its health endpoint (now, or at an earlier check).
func (r *Result) CountsKnown() bool {
	return r.verdict.Counts || (r.probed != nil && !r.probed.CountsAt.IsZero())
}

// heirReason is the audit line's reason for handing a port to a process
// its service started.
func heirReason(a *registry.Allocation, heir probe.Identity) string {
	if a.Reserved() {
		return fmt.Sprintf("pid %d, started by the service, lives on after its gracectl run ended before it registered the owner", heir.PID)
	}
	return fmt.Sprintf("pid %d, started by the service, lives on after owner pid %d and its gracectl run ended", heir.PID, a.PID)
}

// IssueLine is how the watchdog log names a finding: the seed's
// "Port 8001 (grace_learning): dead", and why.
func (r *Result) IssueLine() string {
	return fmt.Sprintf("Port %d (%s): %s (%s)", r.Port, r.Label(), strings.TrimSpace(r.Status), r.Issue)
}

// Label is the service with its port name, if any: "api (admin)".
func (r *Result) Label() string { return registry.Label(r.Service, r.PortName) }
