package registry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gracectl/gracectl/probe"
)

// Request describes a port wanted by a service.
type Request struct {
	Service   string
	Purpose   string
	StartedBy string
	Owner     probe.Identity // PID 0: a reservation, claimed later by Register
	// Supervisor is the process that answers for the port while it lives
	// (`gracectl run`): it releases the port or hands it on when the owner
	// ends, so the watchdog leaves a dead owner's port to it.
	Supervisor probe.Identity
	// Mark is the SHA-256 (hex) of the token run puts in its service's
	// environment: the allocation's DescendantMark.
	Mark      string
	Preferred int // 0: the port the service held last, else the range start
	// PortNames, if set, asks for one port per name, all or none; each
	// allocation carries its name (`run --port http --port admin`).
	PortNames  []string
	Range      Range
	HealthPath string
	Command    []string
	// UDP asks for a port free for UDP as well as TCP (portpicker's
	// portserver protocol promises both).
	UDP bool
	// Count asks for this many unnamed ports at once (default 1): the
	// portserver's pool.
	Count int
}

// ValidationError is a request that is wrong in itself (bad name, range,
// preferred port): a usage mistake, not a failure of the system.
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string { return e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }

// Validate checks a request before any lock is taken and fills defaults.
func (req *Request) Validate() error {
	if err := req.validate(); err != nil {
		return &ValidationError{Err: err}
	}
	return nil
}

func (req *Request) validate() error {
	if strings.TrimSpace(req.Service) == "" {
		return errors.New("--service is required and must not be empty")
	}
	if err := CheckText("service name", req.Service, MaxServiceName); err != nil {
		return err
	}
	if err := CheckText("purpose", req.Purpose, MaxPurpose); err != nil {
		return err
	}
	if err := CheckText("started-by", req.StartedBy, MaxStartedBy); err != nil {
		return err
	}
	if req.HealthPath != "" {
		if err := CheckText("health path", req.HealthPath, MaxHealthPath); err != nil {
			return err
		}
		if !strings.HasPrefix(req.HealthPath, "/") {
			return fmt.Errorf("health path %q must start with /", req.HealthPath)
		}
	}
	if req.Range.Start == 0 {
		req.Range = DefaultRange
	}
	req.Command = CutCommand(req.Command, MaxCommand)
	for i, n := range req.PortNames {
		if isNumber(n) {
			return &NumericPortNameError{Name: n}
		}
		if !validPortName(n) {
			return fmt.Errorf("port name %s: use 1-32 letters, digits, - or _", Quote(n))
		}
		if slices.Contains(req.PortNames[:i], n) {
			return fmt.Errorf("port name %s is given twice", Quote(n))
		}
	}
	if req.Preferred != 0 && !req.Range.Contains(req.Preferred) {
		return fmt.Errorf("preferred port %d is outside the range %s", req.Preferred, req.Range)
	}
	return CheckRange(req.Range)
}

// CheckRange refuses a managed range that overlaps the kernel's ephemeral
// range: the kernel hands those ports to outgoing connections at any moment,
// so a port gracectl found free could be taken before the service binds it.
func CheckRange(r Range) error {
	lo, hi, err := probe.EphemeralRange()
	if err != nil {
		return nil // cannot tell; the bind test still guards each port
	}
	if r.Overlaps(Range{Start: lo, End: hi}) {
		return fmt.Errorf("port range %s overlaps the kernel's ephemeral range %d-%d, whose ports are handed out to outgoing connections; choose a range below %d", r, lo, hi, lo)
	}
	return nil
}

// ExhaustedError means no port in the range is free, or fewer than a
// request for several (all or none) asked for.
type ExhaustedError struct {
	Range     Range
	Managed   int // held by gracectl allocations (before this request)
	Unmanaged int // in use by processes gracectl does not manage
	Elsewhere int // held by another registry of this host (the host registry)
	Wanted    int // ports asked for at once (0 or 1: one)
	Free      int // of those, how many were free
}

func (e *ExhaustedError) Error() string {
	counts := fmt.Sprintf("%d held by gracectl, %d in use by unmanaged processes", e.Managed, e.Unmanaged)
	if e.Elsewhere > 0 {
		counts = fmt.Sprintf("%d held by this registry, %d by the host registry, %d in use by unmanaged processes", e.Managed, e.Elsewhere, e.Unmanaged)
	}
	if e.Wanted > 1 {
		return fmt.Sprintf("only %d of the %d ports asked for are free in range %s (%s); none was allocated", e.Free, e.Wanted, e.Range, counts)
	}
	return fmt.Sprintf("no free port in range %s: %s", e.Range, counts)
}

// Allocate hands out the preferred port if it is free, else the next free
// one upward, wrapping to the range start. A port is free when no allocation
// holds it and it can be bound right now (see probe.Bindable). The bind test
// runs under the exclusive lock, so two gracectl processes never pick the
// same port.
//
// Ports are stable: without a preferred port, a service gets the port it
// held last (LastPorts) if that is free; and a port remembered for another
// service is only handed out when no other port is free, so one service's
// restart does not take another's port.
func (s *Store) Allocate(ctx context.Context, req Request) (*Allocation, error) {
	all, err := s.AllocateAll(ctx, req)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// AllocateAll is Allocate for every name in req.PortNames (or one unnamed
// port), all in one change: all of them or none.
func (s *Store) AllocateAll(ctx context.Context, req Request) ([]*Allocation, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var got []*Allocation
	err := s.update(ctx, func(r *Registry, tx *Tx) (err error) {
		// Read under this registry's lock, so two allocations here never
		// miss each other; the other registries are read as readers do.
		got, err = allocateIn(r, tx, req, s.heldElsewhereMap(req.Range))
		return err
	}, writeOpts{durable: true})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// allocateIn makes req's allocations in r, under the lock; req is valid.
// Ports in elsewhere are held by another registry of this host and never
// handed out.
func allocateIn(r *Registry, tx *Tx, req Request, elsewhere map[int]Held) ([]*Allocation, error) {
	names := req.PortNames
	if len(names) == 0 {
		names = make([]string, max(req.Count, 1))
	}
	var got []*Allocation
	for _, name := range names {
		port, err := pickPort(r, req, name, elsewhere)
		var xe *ExhaustedError
		if errors.As(err, &xe) && reclaimDead(r, tx, req.Range) > 0 {
			port, err = pickPort(r, req, name, elsewhere)
		}
		if errors.As(err, &xe) && len(names) > 1 {
			// The ports this request took before count as free, not
			// held: none of them is kept.
			xe.Managed -= len(got)
			xe.Wanted, xe.Free = len(names), len(got)
		}
		if err != nil {
			return nil, err
		}
		a := &Allocation{
			ID:             newID(),
			Port:           port,
			ServiceName:    req.Service,
			PortName:       name,
			StartedBy:      req.StartedBy,
			Purpose:        req.Purpose,
			AllocatedAt:    tx.Now(),
			HealthStatus:   StatusReserved,
			HealthPath:     req.HealthPath,
			Command:        req.Command,
			DescendantMark: req.Mark,
		}
		if req.Supervisor.PID > 0 {
			a.SupervisorPID, a.SupervisorStart, a.SupervisorPIDNS = req.Supervisor.PID, req.Supervisor.Start, req.Supervisor.PIDNS
		}
		if req.Owner.PID > 0 {
			a.SetOwner(req.Owner)
			a.RegisteredAt = tx.Now()
			a.HealthStatus = StatusStarting
		}
		r.Put(a)
		r.remember(a, tx.Now())
		tx.Log(&AllocateEvent{
			Timestamp: tx.Now(), Action: "allocate", Port: port, ServiceName: a.ServiceName, PortName: name,
			StartedBy: a.StartedBy, Purpose: a.Purpose, PID: int(a.PID), HealthPath: a.HealthPath, Command: a.Command,
		})
		got = append(got, a)
	}
	return got, nil
}

// NumericPortNameError refuses a port name that is a number: `run --port
// 8050` is a guess at "use port 8050", which --preferred does; a port
// name only tells a service's ports apart.
type NumericPortNameError struct{ Name string }

func (e *NumericPortNameError) Error() string {
	return fmt.Sprintf("port name %q is a number: a port name tells a service's ports apart (http, admin), it does not choose the port", e.Name)
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func validPortName(n string) bool {
	if n == "" || len(n) > 32 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// reclaimDead releases, under the lock, the allocations in rg whose owner
// is gone (PID and start time) and whose port nothing holds, as the
// watchdog would at its next cycle: a full range never waits for it. It is
// only called when the range is exhausted, and returns how many it freed.
func reclaimDead(r *Registry, tx *Tx, rg Range) int {
	n := 0
	for _, a := range r.Sorted() {
		// A container's port is settled by the watchdog, which asks its
		// engine: a main PID that ended may have restarted under a new one.
		if _, l := probe.Resolve(a.Owner()); !rg.Contains(a.Port) || a.Reserved() || a.Container != nil || l != probe.Dead || a.Supervised() || probe.Bindable(a.Port) != nil {
			continue
		}
		if _, heir := a.LiveDescendant(); heir {
			continue
		}
		tx.Release(r, a, "allocate", "", fmt.Sprintf("owner pid %d is gone (reclaimed: range %s exhausted)", a.PID, rg))
		n++
	}
	return n
}

// pickPort picks the port for one of req's names: the preferred port, else
// the one the service held last, else the range start, and upward from
// there; in a first pass ports remembered for other services are passed
// over, in a second (if nothing else is free) they are taken too. A port
// another registry holds (elsewhere) is never taken.
func pickPort(r *Registry, req Request, name string, elsewhere map[int]Held) (int, error) {
	rg := req.Range
	start := req.Preferred
	if start == 0 {
		if lp, ok := r.LastPorts[lastPortKey(req.Service, name)]; ok && rg.Contains(lp.Port) {
			start = lp.Port
		} else {
			start = rg.Start
		}
	}
	others := r.rememberedForOthers(req.Service)
	bindable := probe.Bindable
	if req.UDP {
		bindable = probe.BindableTCPUDP
	}
	var managed, unmanaged, held int
	for pass := 0; pass < 2; pass++ {
		managed, unmanaged, held = 0, 0, 0
		for i := 0; i < rg.Size(); i++ {
			port := rg.Start + (start-rg.Start+i)%rg.Size()
			if r.Get(port) != nil {
				managed++
				continue
			}
			if _, ok := elsewhere[port]; ok {
				held++
				continue
			}
			if pass == 0 && others[port] && port != req.Preferred {
				continue
			}
			if err := bindable(port); err != nil {
				// In use (or EACCES for a privileged port and the like):
				// not free.
				unmanaged++
				continue
			}
			return port, nil
		}
	}
	return 0, &ExhaustedError{Range: rg, Managed: managed, Unmanaged: unmanaged, Elsewhere: held}
}

// AdoptRequest turns a process already listening on a port without an
// allocation into that port's owner.
type AdoptRequest struct {
	Port      int
	Owner     probe.Identity // the listener
	Service   string
	StartedBy string
	Command   []string
	Container *Container // the container whose port it is, when the listener is its engine's proxy
	// NAT: no process listens on the port; Container publishes it through
	// its engine's NAT rules alone, so the port is not required to be in
	// use.
	NAT bool
}

// Adopt makes an allocation for a port something already listens on,
// owned by that listener, and logs it as "adopt". The port must not be
// allocated and must still be in use when the lock is held (unless a
// container publishes it through NAT alone).
func (s *Store) Adopt(ctx context.Context, req AdoptRequest) (*Allocation, error) {
	if err := CheckText("service name", req.Service, MaxServiceName); err != nil || req.Service == "" {
		if err == nil {
			err = errors.New("service name is empty")
		}
		return nil, &ValidationError{Err: err}
	}
	var got *Allocation
	err := s.Update(ctx, func(r *Registry, tx *Tx) error {
		if cur := r.Get(req.Port); cur != nil {
			return fmt.Errorf("port %d is already allocated to %s", req.Port, cur.ServiceName)
		}
		if h, ok := s.heldElsewhereMap(Range{Start: req.Port, End: req.Port})[req.Port]; ok {
			return fmt.Errorf("port %d is held by %s in the host registry %s; it is managed there, not here", req.Port, Quote(h.ServiceName), h.Registry)
		}
		if !req.NAT && probe.Bindable(req.Port) == nil {
			return fmt.Errorf("nothing listens on port %d any more", req.Port)
		}
		a := &Allocation{
			ID: newID(), Port: req.Port, ServiceName: req.Service, StartedBy: SafeText(req.StartedBy, MaxStartedBy),
			Purpose: "adopted: was listening without an allocation", AllocatedAt: tx.Now(), RegisteredAt: tx.Now(),
			HealthStatus: StatusActive, Command: CutCommand(req.Command, MaxCommand), Container: req.Container,
		}
		a.SetOwner(req.Owner)
		r.Put(a)
		tx.Log(&AdoptEvent{Timestamp: tx.Now(), Action: "adopt", Port: a.Port, ServiceName: a.ServiceName,
			StartedBy: a.StartedBy, PID: int(a.PID), Command: a.Command, Container: a.Container})
		got = a.Clone()
		return nil
	})
	return got, err
}

// NotAllocatedError means a port has no allocation.
type NotAllocatedError struct{ Port int }

func (e *NotAllocatedError) Error() string {
	return fmt.Sprintf("port %d is not allocated", e.Port)
}

// Claim is a request to bind an owner process to an allocation. It names
// the allocation it claims: by ID, or by service (one of the two must be
// given), so a port that changed hands since the claimant took it (its
// reservation expired and another service got the port) is refused
// instead of taken over.
type Claim struct {
	Port    int
	Owner   probe.Identity
	ID      string // the allocation_id claimed, or
	Service string // the service the allocation must belong to
	Reason  string
	// Container is the container the owner is the main process of; nil
	// for a plain process (a container recorded before is dropped).
	Container *Container
	// Force replaces an owner that still runs; TakeOver takes an
	// allocation that is not the one named (`register --force` sets
	// both). The audit line says it was forced.
	Force, TakeOver bool
}

// Register binds an owner process to an allocation (claiming a
// reservation, or replacing the owner of any allocation).
//
// The allocation must be the one the claim names, and an owner that is
// still alive is replaced only with Force; the audit line then says it was
// forced.
func (s *Store) Register(ctx context.Context, c Claim) (*Allocation, error) {
	if c.Owner.PID <= 0 {
		return nil, fmt.Errorf("pid %d is not a process", c.Owner.PID)
	}
	if c.ID == "" && c.Service == "" {
		return nil, &ValidationError{Err: errors.New("say which allocation is claimed: its service or its allocation ID")}
	}
	var got *Allocation
	err := s.Update(ctx, func(r *Registry, tx *Tx) error {
		a := r.Get(c.Port)
		if a == nil {
			return &NotAllocatedError{Port: c.Port}
		}
		forced := false
		if (c.ID != "" && a.ID != c.ID) || (c.Service != "" && a.ServiceName != c.Service) {
			if !c.TakeOver {
				return &ChangedHandsError{Claim: c, Now: a.Clone(), Changed: c.Service != "" && r.heldBefore(c.Service, c.Port)}
			}
			forced = true
		}
		// A live owner, or the live supervisor of a reservation (the
		// portserver's pool) other than the caller, holds it.
		prev := a.PID
		holder := 0
		if prev > 0 && a.Owner() != c.Owner && ownerMayLive(a) {
			holder = int(prev)
		} else if a.Reserved() && a.SupervisorPID > 0 {
			holder = heldBy(a, callers())
		}
		if holder > 0 {
			if !c.Force {
				return &OwnerAliveError{Port: c.Port, PID: holder, Service: a.ServiceName, Action: fmt.Sprintf("register pid %d", c.Owner.PID)}
			}
			forced = true
		}
		a.SetOwner(c.Owner)
		a.Container = c.Container
		a.RegisteredAt = tx.Now()
		a.HealthFailures = 0
		a.ListenerPID, a.ListenerName = 0, ""
		if a.HealthStatus == StatusReserved || a.HealthStatus == StatusDead || a.HealthStatus == StatusOrphaned || a.HealthStatus == "" {
			a.HealthStatus = StatusStarting
		}
		tx.Log(&RegisterEvent{Timestamp: tx.Now(), Action: "register", Port: c.Port, ServiceName: a.ServiceName,
			PID: c.Owner.PID, PreviousPID: int(prev), Reason: c.Reason, Forced: forced, Container: c.Container})
		got = a.Clone()
		return nil
	})
	return got, err
}

// ChangedHandsError refuses a claim on a port whose allocation is not the
// one claimed: it was released and allocated again since (Changed), or the
// claim names another service or allocation ID than the port's.
type ChangedHandsError struct {
	Claim Claim
	Now   *Allocation
	// Changed: the registry remembers the claimed service holding this
	// port before, so the port really changed hands since.
	Changed bool
}

func (e *ChangedHandsError) Error() string {
	if e.Changed {
		return fmt.Sprintf("port %d is now allocation %s of service %s (allocated %s), not service %s: it changed hands since; allocate a port again, or use --force to take this one anyway",
			e.Claim.Port, e.Now.ID, Quote(e.Now.ServiceName), e.Now.AllocatedAt, Quote(e.Claim.Service))
	}
	if e.Claim.ID != "" {
		// Allocation IDs are not remembered: it may be a wrong ID, or the
		// ID of a reservation that ran out.
		return fmt.Sprintf("port %d is allocated to service %s (allocation %s, allocated %s), not to allocation %s: check the ID you gave (allocate --json prints allocation_id); if it is yours and its reservation ran out, allocate a port again; --force takes this one anyway",
			e.Claim.Port, Quote(e.Now.ServiceName), e.Now.ID, e.Now.AllocatedAt, Quote(e.Claim.ID))
	}
	return fmt.Sprintf("port %d is allocated to service %s (allocation %s, allocated %s), not to service %s: check the service name you gave, or use --force to take this one anyway",
		e.Claim.Port, Quote(e.Now.ServiceName), e.Now.ID, e.Now.AllocatedAt, Quote(e.Claim.Service))
}

// OwnerAliveError refuses to release, or register another owner for, a
// port whose owner still runs.
type OwnerAliveError struct {
	Port    int
	PID     int
	Service string
	Action  string // what was refused; "release it" when empty
}

func (e *OwnerAliveError) Error() string {
	action := e.Action
	if action == "" {
		action = "release it"
	}
	return fmt.Sprintf("port %d is held by pid %d (%s), which is still running; use --force to %s anyway", e.Port, e.PID, e.Service, action)
}

// LiveOwnersError refuses to release several ports whose owners still
// run; it names them all.
type LiveOwnersError struct{ Held []OwnerAliveError }

func (e *LiveOwnersError) Error() string {
	var b strings.Builder
	for i, h := range e.Held {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (pid %d)", h.Port, h.PID)
	}
	return fmt.Sprintf("ports %s of %s are held by processes that are still running; use --force to release them anyway", b.String(), e.Held[0].Service)
}

// ReleaseRequest selects what to release and says who asks and why.
type ReleaseRequest struct {
	Port    int    // release this port, or
	Service string // every port of this service
	Force   bool   // release even if the owner is alive and not the caller
	// Callers are PIDs allowed to release their own ports without Force:
	// the caller and its ancestors.
	Callers []int
	By      string // "cli", "run", "watchdog"
	ByUser  string
	Reason  string
	// ID, when set, releases the port only while it still holds that
	// allocation (allocation_id): a caller giving back what it took never
	// releases whoever holds the port after it.
	ID string
}

// Release gives back ports and logs each with its duration and counts.
func (s *Store) Release(ctx context.Context, req ReleaseRequest) ([]*Allocation, error) {
	var released []*Allocation
	err := s.Update(ctx, func(r *Registry, tx *Tx) error {
		var targets []*Allocation
		if req.Service != "" {
			for _, a := range r.Sorted() {
				if a.ServiceName == req.Service {
					targets = append(targets, a)
				}
			}
			if len(targets) == 0 {
				return fmt.Errorf("service %s holds no port", Quote(req.Service))
			}
		} else {
			a := r.Get(req.Port)
			if a == nil {
				return &NotAllocatedError{Port: req.Port}
			}
			targets = append(targets, a)
		}
		var live []OwnerAliveError
		for _, a := range targets {
			if req.ID != "" && a.ID != req.ID {
				continue
			}
			if holder := heldBy(a, req.Callers); !req.Force && holder > 0 {
				live = append(live, OwnerAliveError{Port: a.Port, PID: holder, Service: a.ServiceName})
			}
		}
		switch len(live) {
		case 0:
		case 1:
			return &live[0]
		default:
			return &LiveOwnersError{Held: live}
		}
		for _, a := range targets {
			if req.ID != "" && a.ID != req.ID {
				continue
			}
			tx.Release(r, a, req.By, req.ByUser, req.Reason)
			released = append(released, a)
		}
		if len(released) == 0 {
			return ErrNoChange
		}
		return nil
	})
	return released, err
}

// ownerMayLive: the owner runs, or cannot be looked at (another PID
// namespace): either way replacing or releasing it needs --force.
func ownerMayLive(a *Allocation) bool {
	_, l := probe.Resolve(a.Owner())
	return l != probe.Dead
}

// heldBy names the process that holds a against callers (a caller and its
// ancestors), 0 if none: an owner that may still run, or, for a
// reservation, the supervisor that still runs (`gracectl run` before its
// command is registered, the portserver's pool). Releasing or registering
// a held port takes --force.
func heldBy(a *Allocation, callers []int) int {
	switch {
	case a.PID > 0 && !slices.Contains(callers, int(a.PID)) && ownerMayLive(a):
		return int(a.PID)
	case a.Reserved() && a.SupervisorPID > 0 && !slices.Contains(callers, a.SupervisorPID) && a.Supervised():
		return a.SupervisorPID
	}
	return 0
}

// callers is this process and its ancestors: a supervisor among them may
// claim its own reservations.
func callers() []int {
	return append([]int{ownPID()}, probe.Ancestors(ownPID())...)
}

// Release removes a from r and logs it with its duration and counts. It is
// the one place a release is recorded, for the CLI, run and the watchdog.
func (tx *Tx) Release(r *Registry, a *Allocation, by, byUser, reason string) {
	r.Delete(a.Port)
	r.remember(a, tx.Now())
	dur := int64(tx.Now().Sub(a.AllocatedAt.Time).Seconds())
	if dur < 0 || a.AllocatedAt.IsZero() {
		dur = 0 // a clock that went backwards never gives a negative duration
	}
	tx.Log(&ReleaseEvent{
		Timestamp: tx.Now(), Action: "release", Port: a.Port, ServiceName: a.ServiceName, PortName: a.PortName,
		DurationSeconds: dur, RequestCount: a.RequestCount, ErrorCount: a.ErrorCount, PID: int(a.PID),
		By: by, ByPID: ownPID(), ByUser: byUser, Reason: reason,
	})
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Forget drops the ports remembered for service, so its next allocation
// starts from the range start like a new service's. It reports how many
// were remembered.
func (s *Store) Forget(ctx context.Context, service string) (int, error) {
	n := 0
	err := s.Update(ctx, func(r *Registry, tx *Tx) error {
		if n = r.Forget(service); n == 0 {
			return ErrNoChange
		}
		return nil
	})
	return n, err
}

// RecordDescendants adds the processes of a service that `gracectl run`
// sees to its allocations (by ID), keeping those already recorded that
// still run, at most MaxDescendants, the oldest first. Nothing is written
// when nothing is new, and nothing is fsynced (as the portserver's
// changes): the record matters while the processes run, and a power cut
// ends them.
func (s *Store) RecordDescendants(ctx context.Context, ids []string, procs []probe.Identity) error {
	return s.update(ctx, func(r *Registry, tx *Tx) error {
		changed := false
		for _, a := range r.Allocations {
			if !slices.Contains(ids, a.ID) {
				continue
			}
			var next []Descendant
			for _, d := range a.Descendants {
				if probe.Alive(probe.Identity{PID: d.PID, Start: d.PIDStart, Boot: a.BootID, PIDNS: d.PIDNS}) {
					next = append(next, d)
				}
			}
			for _, p := range procs {
				d := Descendant{PID: p.PID, PIDStart: p.Start, PIDNS: p.PIDNS}
				if !slices.Contains(next, d) {
					next = append(next, d)
				}
			}
			slices.SortFunc(next, func(x, y Descendant) int { return cmp.Compare(x.PIDStart, y.PIDStart) })
			next = next[:min(len(next), MaxDescendants)]
			if !slices.Equal(next, a.Descendants) {
				a.Descendants, changed = next, true
			}
		}
		if !changed {
			return ErrNoChange
		}
		return nil
	}, writeOpts{})
}
