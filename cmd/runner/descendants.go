package runner

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// awaitDescendants goes on supervising after the child exited, while any
// of its descendants lives: a service that daemonized was re-parented to
// gracectl (the child subreaper), and its port is still its own. It reaps
// them, forwards signals to them, and keeps the allocation's owner on the
// descendant that listens on the port or, before any listens, the oldest.
// It returns when the last one has ended.
func (l *launch) awaitDescendants() {
	self := os.Getpid()
	reaped := make(chan struct{}, 1)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			var ws syscall.WaitStatus
			_, err := syscall.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return // ECHILD: no descendant is left
			}
			select {
			case reaped <- struct{}{}:
			default:
			}
		}
	}()
	poll := time.NewTicker(l.cfg.PollEvery)
	defer poll.Stop()
	for {
		l.followDescendants(self)
		l.recordDescendants(false)
		select {
		case <-gone:
			return
		case sig := <-l.sigs:
			for _, pid := range probe.TakeProcessTable().Children(self) {
				forward(pid, sig)
			}
		case <-reaped:
		case <-poll.C:
		}
	}
}

// followDescendants moves each allocation to the descendant that should
// own it now: the one listening on its port, else the oldest still alive.
func (l *launch) followDescendants(self int) {
	tab := probe.TakeProcessTable()
	kids := tab.Children(self)
	if len(kids) == 0 {
		return
	}
	var oldest probe.Identity
	for _, pid := range kids {
		if id, err := probe.IdentifyLocal(pid); err == nil && (oldest.PID == 0 || id.Start < oldest.Start) {
			oldest = id
		}
	}
	snap := probe.TakeSnapshot()
	for _, a := range l.allocs {
		id := oldest
		for _, pid := range snap.Owners(a.Port) {
			if pid != self && tab.IsDescendant(pid, self) {
				if lid, err := probe.IdentifyLocal(pid); err == nil {
					id = lid
				}
				break
			}
		}
		if id.PID == 0 || id == l.owners[a.Port] {
			continue
		}
		prev := l.owners[a.Port]
		if prev.PID == 0 {
			prev = l.owner
		}
		reason := fmt.Sprintf("pid %d, a descendant of the service, owns it now (pid %d is gone or not listening)", id.PID, prev.PID)
		if _, err := l.cfg.Store.Register(l.bg, registry.Claim{Port: a.Port, ID: a.ID, Owner: id, Reason: reason, Force: true}); err != nil {
			l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not register pid %d for port %d: %s", id.PID, a.Port, registry.PlainText(err))})
			continue
		}
		if l.owners == nil {
			l.owners = map[int]probe.Identity{}
		}
		l.owners[a.Port] = id
		l.notify(Event{Kind: EventOwner, Alloc: a, PID: id.PID})
	}
}

// recordEvery is how often run records the service's processes once it
// is up (they are recorded at every poll while it starts).
const recordEvery = 2 * time.Second

// newRunToken is a random token for the service's environment and its
// SHA-256 (hex), which the allocations record (DescendantMark).
func newRunToken() (token, mark string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// recordDescendants writes the service's processes that run sees now into
// its allocations (Store.RecordDescendants), so that if run is killed the
// watchdog can tell the service lives on and keep its port for it. Only
// those seen at the last look too are written, so that a service that
// keeps running short commands does not rewrite the registry for each;
// all are when the command has just exited (all).
func (l *launch) recordDescendants(all bool) {
	if l.ctr != nil {
		return // the container is the service; its client's helpers are the engine's
	}
	self := os.Getpid()
	now := map[probe.Identity]bool{}
	var procs []probe.Identity
	for _, pid := range probe.TakeProcessTable().Descendants(self) {
		if id, err := probe.IdentifyLocal(pid); err == nil {
			now[id] = true
			if all || l.seen[id] {
				procs = append(procs, id)
			}
		}
	}
	l.seen = now
	if len(procs) == 0 {
		return
	}
	ids := make([]string, len(l.allocs))
	for i, a := range l.allocs {
		ids[i] = a.ID
	}
	if err := l.cfg.Store.RecordDescendants(l.bg, ids, procs); err != nil {
		l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not record the service's processes: %s", registry.PlainText(err))})
	}
}
