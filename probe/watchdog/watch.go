package watchdog

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// Watcher is the long-running watchdog of one registry: `gracectl watch`.
type Watcher struct {
	Store    *registry.Store
	Options  Options
	Interval time.Duration
	API      string // where the HTTP API listens, for the state file
	// Portserver is where the portserver listens, for the state file.
	Portserver string
	// APIAccess says how the API can be reached ("loopback", "remote,
	// unauthenticated", …), for the state file and status.
	APIAccess string
	// StartedBy is recorded in the state file: "run" for a watchdog that
	// `gracectl run` started, "" otherwise.
	StartedBy string
	// ExitWhenIdle, if set, ends Run once the registry has held no
	// allocation for this long (a watchdog `gracectl run` started).
	ExitWhenIdle time.Duration
	// Log receives the watchdog's log lines ("[PORT-WATCHDOG] …").
	Log registry.LogFunc
	// OnCycle, if set, sees every finished cycle (metrics), OnCycleError
	// every cycle that failed, and OnExitCheck the report of each check of
	// the ports of an owner that exited between cycles.
	OnCycle      func(*Report)
	OnCycleError func(error)
	OnExitCheck  func(*Report)
	// OnChange, if set, is called when the registry file changed, whoever
	// changed it, seen within PickUpEvery (routes follow it).
	OnChange func()
	// Routes, if set, is where `watch --routes` keeps routes, for the
	// state file.
	Routes *Routes

	mu     sync.Mutex
	held   bool   // Lock was called
	epoch  uint64 // set by Lock
	flight *flight
	state  State
	open   episodes // issues open at the last cycle
}

type flight struct {
	done   chan struct{}
	rep    *Report
	err    error
	joined int // triggers waiting on this cycle besides its starter
}

// AlreadyRunningError refuses a second watchdog for one registry.
type AlreadyRunningError struct {
	PID  int
	Lock string
	// NotWatchdog: the lock's holder is not a gracectl watch (another
	// program took the lock file).
	NotWatchdog bool
}

func (e *AlreadyRunningError) Error() string {
	switch {
	case e.NotWatchdog:
		return fmt.Sprintf("pid %d, which is not a gracectl watch, holds the watchdog lock %s", e.PID, e.Lock)
	case e.PID > 0:
		return fmt.Sprintf("another gracectl watch (pid %d) is already watching this registry (it holds %s)", e.PID, e.Lock)
	}
	return fmt.Sprintf("another gracectl watch is already watching this registry (it holds %s)", e.Lock)
}

// Hint says what to do about it.
func (e *AlreadyRunningError) Hint() string {
	if e.NotWatchdog {
		return fmt.Sprintf("find out what pid %d is (ps -p %d) and stop it; gracectl watch --stop signals only a gracectl watch", e.PID, e.PID)
	}
	return "use it as it is (status shows it), or stop it first with 'gracectl watch --stop'"
}

// Trigger runs a cycle now and returns its report. A trigger that arrives
// while a cycle runs joins that cycle instead of starting another.
func (w *Watcher) Trigger(ctx context.Context) (*Report, error) {
	w.mu.Lock()
	if f := w.flight; f != nil {
		f.joined++
		w.mu.Unlock()
		select {
		case <-f.done:
			return f.rep, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	w.flight = f
	w.mu.Unlock()

	// The cycle is not tied to the caller's context: joiners may still wait.
	f.rep, f.err = Cycle(context.WithoutCancel(ctx), w.Store, w.Options)
	w.mu.Lock()
	w.flight = nil
	var started, ended []string
	if f.err == nil {
		if w.open == nil {
			w.open = episodes{}
		}
		started, ended = w.open.update(f.rep, true)
		w.record(f.rep)
	}
	w.mu.Unlock()
	close(f.done)
	if f.err != nil {
		w.Log.Printf("[PORT-WATCHDOG] Cycle failed: %s", registry.PlainText(f.err))
		if w.OnCycleError != nil {
			w.OnCycleError(f.err)
		}
	} else {
		w.report(f.rep, started, ended)
		if w.OnCycle != nil {
			w.OnCycle(f.rep)
		}
	}
	return f.rep, f.err
}

// State is the watchdog's state as of now: what it has counted so far.
func (w *Watcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// record updates the persisted state after a cycle; w.mu is held.
func (w *Watcher) record(rep *Report) {
	w.state.ChecksPerformed++
	w.state.IssuesDetected += int64(rep.NewIssues)
	w.state.StaleCleaned += int64(rep.Cleaned())
	w.state.MonitoredPorts = len(rep.Results)
	w.state.LastCycleAt = rep.StartedAt
	w.state.LastCycleDurationMS = rep.DurationMS
	w.state.LastSummary = rep.Summary()
	if err := SaveState(w.Store, &w.state); err != nil {
		w.Log.Printf("[PORT-WATCHDOG] Cannot save state: %s", registry.PlainText(err))
	}
}

// report writes the seed's log lines for a cycle: the summary, each issue
// that started, each that ended, and the cleanups.
func (w *Watcher) report(rep *Report, started, ended []string) {
	w.Log.Printf("[PORT-WATCHDOG] %s", rep.Summary())
	w.logFindings(rep, started, ended)
}

func (w *Watcher) logFindings(rep *Report, started, ended []string) {
	for _, line := range started {
		w.Log.Printf("[PORT-WATCHDOG] %s", line)
	}
	for _, line := range ended {
		w.Log.Printf("[PORT-WATCHDOG] %s", line)
	}
	for _, r := range rep.Results {
		if r.verdict.Heir && !strings.HasPrefix(r.Action, "skipped") {
			w.Log.Printf("[PORT-WATCHDOG] Port %d (%s): %s", r.Port, r.Label(), r.verdict.OwnerReason)
		}
		switch {
		case r.Action != "released":
		case r.verdict.Ended:
			w.Log.Printf("[PORT-MANAGER] Released port %d (%s): %s", r.Port, r.Label(), r.verdict.Release)
		default:
			w.Log.Printf("[PORT-WATCHDOG] Cleaning up stale port %d", r.Port)
			w.Log.Printf("[PORT-MANAGER] Released port %d", r.Port)
		}
	}
}

// Lock takes the one-watchdog-per-registry lock, held until release is
// called. It fails at once if another watchdog holds it. Run takes it
// itself unless Lock was called first (to set up the API under the lock).
func (w *Watcher) Lock() (release func(), err error) {
	if err := w.Store.EnsureDir(); err != nil {
		return nil, err
	}
	fl, err := w.Store.NewLock(LockPath(w.Store))
	if err != nil {
		return nil, err
	}
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("cannot lock %s: %w", LockPath(w.Store), err)
	}
	if !ok {
		e := &AlreadyRunningError{Lock: LockPath(w.Store)}
		if id, ok, err := Running(w.Store); err == nil && ok {
			e.PID = id.PID
		} else if pids, err := LockHolders(w.Store); err == nil && len(pids) > 0 {
			e.PID, e.NotWatchdog = pids[0], true
		}
		return nil, e
	}
	w.held = true
	if err := w.newEpoch(); err != nil {
		fl.Close()
		return nil, err
	}
	return func() { fl.Close() }, nil
}

// Epoch numbers this run of the watchdog among all runs for the registry,
// from Lock on: higher than the one before it, recorded in the state file
// at once, and at least the Unix time in seconds should that file be lost.
// The event stream's ids carry it, so that they never repeat across
// restarts.
func (w *Watcher) Epoch() uint64 { return w.epoch }

// newEpoch takes the next epoch and records it; under the watchdog lock.
func (w *Watcher) newEpoch() error {
	st, err := readState(w.Store) // the file as it is: its epoch, whoever wrote it
	if err != nil {
		st = &State{IntervalSeconds: DefaultInterval.Seconds()} // an unreadable state file is replaced by Run
	}
	w.epoch = max(st.EventEpoch+1, uint64(time.Now().Unix()))
	st.EventEpoch, st.Running = w.epoch, false
	if err := SaveState(w.Store, st); err != nil {
		return fmt.Errorf("cannot save watchdog state: %w", err)
	}
	return nil
}

// Run is `gracectl watch`: a cycle at once, then one every Interval, until
// ctx ends. A value on now runs a cycle at once (SIGHUP). Under systemd it
// sends READY=1 after the first cycle, STATUS= after each, WATCHDOG=1 from
// the loop when WatchdogSec is set, and STOPPING=1 on the way out. The
// interval uses the monotonic clock, so wall-clock jumps do not change it.
func (w *Watcher) Run(ctx context.Context, now <-chan struct{}) error {
	if w.Interval <= 0 {
		w.Interval = DefaultInterval
	}
	if !w.held {
		unlock, err := w.Lock()
		if err != nil {
			return err
		}
		defer unlock()
	}
	if err := w.started(); err != nil {
		return err
	}
	defer w.stopped()
	w.Log.Printf("[PORT-WATCHDOG] Started (checking every %s)", FormatInterval(w.Interval))
	w.Log.Printf("[PORT-WATCHDOG] Monitoring ports %s", w.Options.Range)

	var wdC <-chan time.Time
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		t := time.NewTicker(d / 2)
		defer t.Stop()
		wdC = t.C
	}
	w.notifiedCycle(ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	// Owner exits, between cycles.
	exitsCtx, stopExits := context.WithCancel(ctx)
	exitsDone := make(chan struct{})
	go func() { defer close(exitsDone); w.exits(exitsCtx) }()
	defer func() { stopExits(); <-exitsDone }()
	ticker := time.NewTicker(w.Interval)
	defer ticker.Stop()
	idle := w.newIdleTimer()
	defer idle.stop()
	for {
		select {
		case <-idle.C:
			if idle.expired(ctx) {
				w.Log.Printf("[PORT-WATCHDOG] No allocation for %s: exiting", w.ExitWhenIdle)
				_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
				return nil
			}
		case <-ctx.Done():
			_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
			return nil
		case <-ticker.C:
			w.notifiedCycle(ctx)
		case <-now:
			w.notifiedCycle(ctx)
			ticker.Reset(w.Interval)
		case <-wdC:
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}

// started records in the state file that this process is the running
// watchdog.
func (w *Watcher) started() error {
	self := probe.Self()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state = State{
		Running: true, PID: self.PID, PIDStart: self.Start, BootID: self.Boot,
		StartedAt: registry.Now(), IntervalSeconds: w.Interval.Seconds(), API: w.API, APIAccess: w.APIAccess, StartedBy: w.StartedBy,
		EventEpoch: w.epoch,
		Portserver: w.Portserver,
		Routes:     w.Routes,
	}
	if err := SaveState(w.Store, &w.state); err != nil {
		return fmt.Errorf("cannot save watchdog state: %w", err)
	}
	return nil
}

// notifiedCycle runs a cycle and tells systemd how it went (STATUS=) and
// that the watchdog is alive (WATCHDOG=1).
func (w *Watcher) notifiedCycle(ctx context.Context) {
	rep, err := w.Trigger(ctx)
	status := "cycle failed"
	if err == nil {
		status = rep.Summary()
	}
	_, _ = daemon.SdNotify(false, "STATUS="+status)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
}

// idleTimer tells when the registry has held no allocation for
// ExitWhenIdle; its C never fires when ExitWhenIdle is 0.
type idleTimer struct {
	C     <-chan time.Time
	w     *Watcher
	t     *time.Ticker
	since time.Time // zero while the registry holds allocations
}

func (w *Watcher) newIdleTimer() *idleTimer {
	it := &idleTimer{w: w}
	if w.ExitWhenIdle > 0 {
		it.t = time.NewTicker(max(w.ExitWhenIdle/4, 100*time.Millisecond))
		it.C = it.t.C
	}
	return it
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}

// expired reads the registry: true once it has been empty for
// ExitWhenIdle; a registry that cannot be read counts as not empty.
func (it *idleTimer) expired(ctx context.Context) bool {
	r, err := it.w.Store.Read(ctx)
	switch {
	case err != nil || len(r.Allocations) > 0:
		it.since = time.Time{}
	case it.since.IsZero():
		it.since = time.Now()
	case time.Since(it.since) >= it.w.ExitWhenIdle:
		return true
	}
	return false
}

func (w *Watcher) stopped() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state.Running = false
	w.state.StoppedAt = registry.Now()
	if err := SaveState(w.Store, &w.state); err != nil {
		w.Log.Printf("[PORT-WATCHDOG] Cannot save state: %s", registry.PlainText(err))
	}
	w.Log.Printf("[PORT-WATCHDOG] Stopped")
}

// FormatInterval prints an interval as the seed does: "30s", or Go's
// form when it is not whole seconds ("1.5s", "250ms").
func FormatInterval(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return d.String()
}
