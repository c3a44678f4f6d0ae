// Package watchdog is the watchdog cycle: it probes every allocation (owner
// alive, port listening, health endpoint), decides each one's health_status,
// and applies the results and the cleanup of dead services to the registry.
//
// Probes run without the registry lock, in parallel with bounded
// concurrency, so a slow endpoint never blocks `gracectl allocate`, and one
// hanging endpoint never delays the others. Results are applied under the
// lock, and only to allocations that are still the ones probed (same port,
// owner and allocation time): a port released or re-allocated while the
// cycle ran is left as it now is. No process is ever signalled.
package watchdog

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
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
	Port         int           `json:"port"`
	Service      string        `json:"service_name"`
	PID          int           `json:"pid,omitzero"`
	Process      string        `json:"process,omitzero"`
	Alive        bool          `json:"alive"`
	Listening    bool          `json:"listening"`
	ListenerPIDs []int         `json:"listener_pids,omitempty"`
	Health       string        `json:"health"` // "ok", "failing: …", "none" (no path), "skipped"
	Status       string        `json:"health_status"`
	Issue        string        `json:"issue,omitzero"`
	LastCheck    registry.Time `json:"last_check"`
	RequestCount int64         `json:"request_count"`
	ErrorCount   int64         `json:"error_count"`
	Action       string        `json:"action,omitzero"` // "released", "would release", "skipped: changed during the cycle"

	release     string // reason, when the allocation is to be released
	failures    int
	probed      *registry.Allocation
	counts      bool
	listenerPID int
	listenerNm  string
	lastError   string
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
}

// Summary is the seed's health-check line.
func (r *Report) Summary() string {
	return fmt.Sprintf("Health check: %d active, %d dead, %d issues", r.Active, r.Dead, r.Issues)
}

// Cycle runs one watchdog cycle over store.
func Cycle(ctx context.Context, store *registry.Store, opts Options) (*Report, error) {
	opts.fill()
	start := time.Now()
	rep := &Report{StartedAt: registry.Now(), DryRun: opts.DryRun, Released: []int{}}
	reg, err := store.Read(ctx)
	if err != nil {
		return nil, err
	}
	allocs := reg.Sorted()
	for i, a := range allocs {
		allocs[i] = a.Clone()
	}
	socks := probe.TakeSnapshot()
	procs := probe.TakeProcessTable()
	ports := make([]int, len(allocs))
	for i, a := range allocs {
		ports[i] = a.Port
	}
	owners := socks.OwnersOf(ports) // one pass over /proc/*/fd for all of them

	rep.Results = make([]*Result, len(allocs))
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for i, a := range allocs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Off Linux, Listening connects; it runs here, in parallel.
			rep.Results[i] = probeOne(ctx, a, socks.Listening(ctx, a.Port), owners[a.Port], procs, opts)
		}()
	}
	wg.Wait()

	if !opts.DryRun {
		if err := apply(ctx, store, rep); err != nil {
			return nil, err
		}
	} else {
		for _, r := range rep.Results {
			if r.release != "" {
				r.Action = "would release (" + r.release + ")"
			}
		}
	}
	for _, r := range rep.Results {
		switch r.Status {
		case registry.StatusActive:
			rep.Active++
		case registry.StatusDead:
			rep.Dead++
		}
		if r.Issue != "" {
			rep.Issues++
		}
	}
	rep.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return rep, nil
}

// probeOne looks at one allocation; it touches no shared state.
func probeOne(ctx context.Context, a *registry.Allocation, listening bool, listeners []int, procs *probe.ProcessTable, opts Options) *Result {
	now := registry.Now()
	r := &Result{
		Port: a.Port, Service: a.ServiceName, PID: a.PID, Listening: listening, ListenerPIDs: listeners,
		LastCheck: now, RequestCount: a.RequestCount, ErrorCount: a.ErrorCount, Health: "none",
		failures: a.HealthFailures, probed: a,
	}
	owner := probe.Identity{PID: a.PID, Start: a.PIDStart, Boot: a.BootID}
	if a.PID > 0 {
		r.Alive = probe.Alive(owner)
		if r.Alive {
			r.Process = procs.Name(a.PID)
		}
	}
	// The first listener that is not the owner's, for orphaned and foreign
	// ports.
	foreign := 0
	for _, pid := range listeners {
		if !(a.PID > 0 && r.Alive && procs.IsDescendant(pid, a.PID)) {
			foreign = pid
			break
		}
	}
	describe := func(pid int) string {
		if pid == 0 {
			return "an unknown process"
		}
		if n := procs.Name(pid); n != "" {
			return fmt.Sprintf("pid %d (%s)", pid, n)
		}
		return fmt.Sprintf("pid %d", pid)
	}
	if foreign != 0 {
		r.listenerPID, r.listenerNm = foreign, procs.Name(foreign)
	}

	switch {
	case a.Reserved():
		r.Status = registry.StatusReserved
		r.Health = "skipped"
		if !listening && time.Since(a.AllocatedAt.Time) > opts.ReservationLease {
			r.Issue = "stale allocation: reservation not claimed within " + opts.ReservationLease.String()
			r.release = "stale reservation, never claimed"
		}
	case !r.Alive && listening:
		r.Status = registry.StatusOrphaned
		r.Health = "skipped"
		r.Issue = fmt.Sprintf("orphaned: owner pid %d is gone, %s still listens", a.PID, describe(foreign))
	case !r.Alive:
		r.Status = registry.StatusDead
		r.Health = "skipped"
		r.Issue = fmt.Sprintf("crashed process: owner pid %d is gone", a.PID)
		r.release = fmt.Sprintf("owner pid %d is gone", a.PID)
	case !listening:
		r.Health = "skipped"
		since := a.RegisteredAt.Time
		if since.IsZero() {
			since = a.AllocatedAt.Time
		}
		if time.Since(since) <= opts.StartupGrace {
			r.Status = registry.StatusStarting
		} else {
			r.Status = registry.StatusNotListening
			r.Issue = "non-responsive port: owner alive but not listening"
		}
	default:
		r.Status = registry.StatusActive
		if a.HealthPath != "" {
			h := probe.CheckHealth(ctx, a.Port, a.HealthPath, opts.HealthTimeout)
			if h.RequestCount != nil {
				r.RequestCount, r.counts = *h.RequestCount, true
			}
			if h.ErrorCount != nil {
				r.ErrorCount, r.counts = *h.ErrorCount, true
			}
			if h.OK {
				r.Health, r.failures = "ok", 0
			} else {
				r.failures++
				r.lastError = h.Err
				r.Health = fmt.Sprintf("failing (%d/%d): %s", r.failures, opts.UnhealthyAfter, h.Err)
				if r.failures >= opts.UnhealthyAfter {
					r.Status = registry.StatusUnhealthy
					r.Issue = fmt.Sprintf("failed health check: %s, %d times in a row", h.Err, r.failures)
				}
			}
		}
		if foreign != 0 && r.Issue == "" {
			r.Issue = fmt.Sprintf("port served by %s, which is not the owner (pid %d) or its child", describe(foreign), a.PID)
		}
	}
	return r
}

// apply writes the results under the lock, to allocations that are still
// the ones probed, and releases the dead and the stale.
func apply(ctx context.Context, store *registry.Store, rep *Report) error {
	return store.Update(ctx, func(reg *registry.Registry, tx *registry.Tx) error {
		for _, r := range rep.Results {
			cur := reg.Get(r.Port)
			if cur == nil || !cur.SameAs(r.probed) {
				r.Action = "skipped: changed during the cycle"
				r.release = ""
				continue
			}
			if r.release != "" {
				tx.Release(reg, cur, "watchdog", "", r.release)
				r.Action = "released"
				rep.Released = append(rep.Released, r.Port)
				continue
			}
			cur.LastHealthCheck = r.LastCheck
			cur.HealthStatus = r.Status
			cur.HealthFailures = r.failures
			cur.LastError = r.lastError
			if r.counts {
				cur.RequestCount, cur.ErrorCount = r.RequestCount, r.ErrorCount
			}
			cur.ListenerPID, cur.ListenerName = r.listenerPID, registry.SafeText(r.listenerNm, 64)
		}
		return nil
	})
}

// IssueLine is how the watchdog log names a finding: the seed's
// "Port 8001 (grace_learning): dead".
func (r *Result) IssueLine() string {
	return fmt.Sprintf("Port %d (%s): %s", r.Port, r.Service, strings.TrimSpace(r.Status))
}
