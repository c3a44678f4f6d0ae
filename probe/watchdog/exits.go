package watchdog

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// PickUpEvery is how often the watcher looks for new and changed
// allocations between cycles (a stat of the registry file).
const PickUpEvery = 250 * time.Millisecond

// exits releases a dead owner's port moments after its death instead of at
// the next cycle: it holds a pidfd for every live owner (probe.ExitWatch)
// and, when one ends, runs the cycle's own rules on that owner's ports at
// once, with the same log lines and reasons. It does the same when the
// engine of a container that owns ports reports it started, died or was
// removed (containerWatch). New and changed allocations are picked up
// within PickUpEvery. The cycle stays the backstop for what neither can
// see: kernels or platforms without pidfds, owners beyond the open-file
// limit, engines that cannot be asked.
func (w *Watcher) exits(ctx context.Context) {
	ow := &ownerWatch{w: w}
	if ew, err := probe.NewExitWatch(); err != nil {
		w.Log.Printf("[PORT-WATCHDOG] Owner exits are not watched (%v); dead owners are found by the cycle every %s", err, FormatInterval(w.Interval))
	} else {
		defer ew.Close()
		probe.RaiseFileLimit()
		ow.ew = ew
	}
	ctrs := &containerWatch{w: w, events: make(chan string, 64)}
	defer ctrs.stop()
	var stamp string
	sync := func() {
		stamp = registry.FileStamp(w.Store.Path())
		reg, err := w.Store.Read(ctx)
		if err != nil {
			return // the cycle reports it
		}
		ctrs.sync(ctx, reg)
		if dead := ow.sync(reg); len(dead) > 0 {
			w.checkPorts(ctx, dead)
		}
	}
	sync()
	var exited <-chan probe.Identity // nil without pidfds: never ready
	if ow.ew != nil {
		exited = ow.ew.Exited()
		w.Log.Printf("[PORT-WATCHDOG] Watching owner exits (pidfd): %d owners now, new ones within %s", len(ow.owners), PickUpEvery)
	}
	tick := time.NewTicker(PickUpEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-exited:
			if ports := ow.owners[id]; len(ports) > 0 {
				w.checkPorts(ctx, ports)
			}
		case id := <-ctrs.events:
			if ports := ctrs.ports[id]; len(ports) > 0 {
				w.checkPorts(ctx, ports)
			}
		case <-tick.C:
			if registry.FileStamp(w.Store.Path()) != stamp {
				sync()
				if w.OnChange != nil {
					w.OnChange()
				}
			}
		}
	}
}

// ownerWatch holds a pidfd for every owner of the registry.
type ownerWatch struct {
	w       *Watcher
	ew      *probe.ExitWatch         // nil: no pidfds here
	owners  map[probe.Identity][]int // owner → its ports, as last read
	limited bool                     // out of file descriptors
}

// sync watches the owners of reg and forgets those gone from it; it returns
// the ports of owners already dead.
func (o *ownerWatch) sync(reg *registry.Registry) (dead []int) {
	if o.ew == nil {
		return nil
	}
	next := map[probe.Identity][]int{}
	for _, a := range reg.Sorted() {
		if a.Reserved() {
			continue
		}
		id := a.Owner()
		next[id] = append(next[id], a.Port)
		if o.limited && !o.ew.Watching(id) {
			continue
		}
		alive, err := o.ew.Watch(id)
		if errors.Is(err, probe.ErrOwnerUnknown) {
			continue // another PID namespace: the cycle decides
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			o.limited = true
			o.w.Log.Printf("[PORT-WATCHDOG] Out of file descriptors watching owners; the rest are checked by the cycle every %s", FormatInterval(o.w.Interval))
			continue
		}
		if !alive {
			dead = append(dead, a.Port)
		}
	}
	for id := range o.owners {
		if _, ok := next[id]; !ok {
			o.ew.Forget(id)
		}
	}
	o.owners = next
	return dead
}

// checkPorts runs the cycle's rules on some allocations now, outside the
// cycle: the owner of these ports just exited.
func (w *Watcher) checkPorts(ctx context.Context, ports []int) {
	opts := w.Options
	opts.Ports = ports
	rep, err := Cycle(ctx, w.Store, opts)
	if err != nil {
		w.Log.Printf("[PORT-WATCHDOG] Checking ports %v after their owner exited: %v", ports, err)
		return
	}
	// A cycle running meanwhile may have released them first.
	var mine []*Result
	for _, r := range rep.Results {
		if r.Action != ActionChanged {
			mine = append(mine, r)
		}
	}
	rep.Results = mine
	w.mu.Lock()
	w.state.StaleCleaned += int64(rep.Cleaned())
	if w.open == nil {
		w.open = episodes{}
	}
	started, _ := w.open.update(rep, false)
	w.state.IssuesDetected += int64(rep.NewIssues)
	w.mu.Unlock()
	w.logFindings(rep, started, nil)
	if w.OnExitCheck != nil {
		w.OnExitCheck(rep)
	}
}
