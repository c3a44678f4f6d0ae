package registry

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"

	"github.com/gracectl/gracectl/probe"
)

// Pool is a set of ports one long-lived process (the portserver) keeps
// reserved in the registry, to hand them out one at a time without a
// registry write before each answer.
//
// Its reservations name that process as their supervisor: while it runs,
// nobody else releases or registers them without --force (heldBy), and no
// lease runs out on them. Every hand-out is checked under the registry
// lock (Take): the port must still be this pool's reservation — the
// registry file is read again whenever it is not the one the pool last
// read or wrote — and still free for TCP and UDP. Record then makes the
// ports handed out allocations owned by their clients, many in one change,
// and never over an owner someone registered meanwhile.
type Pool struct {
	Store      *Store
	Range      Range
	Service    string
	Purpose    string
	Supervisor probe.Identity // the process that holds the pool
	Size       int            // ports kept reserved
	Low        int            // refilled when fewer are left

	takeMu sync.Mutex // one Take at a time
	// mu guards what follows; it is taken after the registry lock, never
	// before it.
	mu   sync.Mutex
	free []*Allocation
	next int // the port after the last one reserved: round-robin
	drop []*Allocation
	// seen is the registry file as the pool last read or wrote it, held
	// open so that its inode cannot be reused by another file.
	seen     *os.File
	seenInfo fs.FileInfo
	// last is the registry as the pool last wrote or read it, which the
	// next change starts from when the file is still those bytes.
	last *Registry

	heldOnce sync.Once
	held     *HeldLock // the registry lock, its file kept open
}

// lock returns the pool's registry lock.
func (p *Pool) lock() *HeldLock {
	p.heldOnce.Do(func() { p.held = NewHeldLock() })
	return p.held
}

// opts are the options of the pool's changes: its held lock, and the
// registry it last saw to start from.
func (p *Pool) opts(got *[]*Allocation) writeOpts {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	return writeOpts{written: p.written(got), held: p.lock(), keep: true, prev: last}
}

// HandedOut reports whether a is a port the portserver handed out to a
// client, which owns it until it exits.
func (a *Allocation) HandedOut() bool { return a.StartedBy == PortserverStartedBy && !a.Reserved() }

// ErrPoolEmpty means the pool holds no port that can be handed out.
var ErrPoolEmpty = errors.New("the portserver's pool is empty")

// HandOut is a port of the pool given to a client.
type HandOut struct {
	Port    int
	PoolID  string // the reservation's allocation ID
	Owner   probe.Identity
	Service string
}

// Take hands out the next port of the pool, reserving more first if none
// is left. The port is checked under the registry lock: still this pool's
// reservation and still free for TCP and UDP. A port something else has
// bound meanwhile is not handed out, and is released at the next Record.
func (p *Pool) Take(ctx context.Context) (*Allocation, error) {
	p.takeMu.Lock()
	defer p.takeMu.Unlock()
	a, err := p.takeChecked(ctx)
	if !errors.Is(err, ErrPoolEmpty) {
		return a, err
	}
	if err := p.Refill(ctx); err != nil {
		return nil, err
	}
	return p.takeChecked(ctx)
}

func (p *Pool) takeChecked(ctx context.Context) (*Allocation, error) {
	unlock, err := p.Store.lockHeld(ctx, p.lock())
	if err != nil {
		return nil, err
	}
	defer unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.current() {
		r, _, err := p.Store.read(p.last)
		if err != nil {
			return nil, err
		}
		p.saw(r)
	}
	for len(p.free) > 0 {
		a := p.free[0]
		p.free = p.free[1:]
		if probe.BindableTCPUDP(a.Port) != nil {
			p.drop = append(p.drop, a)
			continue
		}
		return a, nil
	}
	return nil, ErrPoolEmpty
}

// Refill reserves ports until the pool holds Size, round-robin through the
// range, each free for TCP and UDP; fewer if the range has fewer free. The
// change is not fsynced (its owner is a live process that a power cut
// kills anyway: docs/file-formats.md).
func (p *Pool) Refill(ctx context.Context) error {
	var got []*Allocation
	return p.Store.update(ctx, func(r *Registry, tx *Tx) (err error) {
		if got, err = p.reserve(r, tx, true); err == nil && len(got) == 0 {
			err = ErrNoChange
		}
		return err
	}, p.opts(&got))
}

// reserve reserves in r the ports the pool lacks (all it lacks when it has
// fewer than Low left, or when always is set), under the registry lock.
func (p *Pool) reserve(r *Registry, tx *Tx, always bool) ([]*Allocation, error) {
	p.mu.Lock()
	p.saw(r)
	need, next := p.Size-len(p.free), p.next
	p.mu.Unlock()
	if !always && p.Size-need >= p.Low {
		return nil, nil
	}
	// The pool's ports are free for UDP too, and never remembered as the
	// service's last port (StartedBy).
	req := Request{Service: p.Service, Purpose: p.Purpose, StartedBy: PortserverStartedBy, Range: p.Range, Supervisor: p.Supervisor, UDP: true}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	elsewhere := p.Store.heldElsewhereMap(p.Range)
	var got []*Allocation
	for len(got) < need {
		if !p.Range.Contains(next) {
			next = p.Range.Start
		}
		req.Preferred = next
		a, err := allocateIn(r, tx, req, elsewhere)
		if err != nil {
			var xe *ExhaustedError
			if errors.As(err, &xe) && len(got) > 0 {
				break
			}
			return nil, err
		}
		got = append(got, a...)
		next = a[0].Port + 1
	}
	return got, nil
}

// Record makes the ports handed out allocations owned by their clients, in
// one change that is not fsynced, each logged as a
// register line; releases the ports Take found in use; and tops the pool
// up if it runs low or the change is made anyway. A port that is no longer this pool's reservation when
// the change is made (released, or registered to another process with
// --force, since it was handed out) is left as it is, its owner never
// replaced: it is returned in refused.
func (p *Pool) Record(ctx context.Context, outs []HandOut) (refused []HandOut, err error) {
	p.mu.Lock()
	drop := p.drop
	p.drop = nil
	low := len(p.free) < p.Low
	p.mu.Unlock()
	if len(outs) == 0 && len(drop) == 0 && !low {
		return nil, nil
	}
	var got []*Allocation
	err = p.Store.update(ctx, func(r *Registry, tx *Tx) error {
		refused = nil
		changed := 0
		for _, h := range outs {
			a := r.Get(h.Port)
			if !p.ours(a, h.PoolID) {
				refused = append(refused, h)
				continue
			}
			a.SetOwner(h.Owner)
			// The client owns it now; the pool's process no longer
			// answers for it.
			a.SupervisorPID, a.SupervisorStart, a.SupervisorPIDNS = 0, 0, 0
			a.ServiceName = h.Service
			a.Purpose = "portserver request"
			a.RegisteredAt = tx.Now()
			a.HealthStatus = StatusStarting
			tx.Log(&RegisterEvent{Timestamp: tx.Now(), Action: "register", Port: a.Port, ServiceName: a.ServiceName,
				PID: h.Owner.PID, Reason: "handed out by the portserver"})
			changed++
		}
		for _, d := range drop {
			if a := r.Get(d.Port); p.ours(a, d.ID) {
				tx.Release(r, a, "watchdog", "", "in use by another process when the portserver was about to hand it out")
				changed++
			}
		}
		// A change written anyway tops the pool up to its size: the ports
		// cost their bind tests either way, and the pool then runs empty
		// (a registry write on a request's path) only when more than its
		// size are asked for between two writes.
		var err error
		if got, err = p.reserve(r, tx, changed > 0); err != nil {
			var xe *ExhaustedError
			if !errors.As(err, &xe) {
				return err
			}
		}
		if changed+len(got) == 0 {
			return ErrNoChange
		}
		return nil
	}, p.opts(&got))
	if err != nil {
		p.mu.Lock()
		p.drop = append(p.drop, drop...)
		p.mu.Unlock()
	}
	return refused, err
}

// Close releases the ports the pool still holds (fsynced, as any ordinary
// change), with reason.
func (p *Pool) Close(ctx context.Context, reason string) error {
	p.mu.Lock()
	left := append(p.free, p.drop...)
	p.free, p.drop = nil, nil
	if p.seen != nil {
		p.seen.Close()
		p.seen, p.seenInfo = nil, nil
	}
	p.last = nil
	p.mu.Unlock()
	p.lock().Close()
	if len(left) == 0 {
		return nil
	}
	return p.Store.Update(ctx, func(r *Registry, tx *Tx) error {
		n := 0
		for _, d := range left {
			if a := r.Get(d.Port); p.ours(a, d.ID) {
				tx.Release(r, a, "watchdog", "", reason)
				n++
			}
		}
		if n == 0 {
			return ErrNoChange
		}
		return nil
	})
}

// written returns the hook that takes the registry as written and adds
// the ports *got reserved to the pool.
func (p *Pool) written(got *[]*Allocation) func(r *Registry) {
	return func(r *Registry) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.saw(r)
		for _, a := range *got {
			p.free = append(p.free, a.Clone())
			p.next = a.Port + 1
		}
	}
}

// ours reports whether a is still the pool's reservation id.
func (p *Pool) ours(a *Allocation, id string) bool {
	return a != nil && a.ID == id && a.Reserved() &&
		a.SupervisorPID == p.Supervisor.PID && a.SupervisorStart == p.Supervisor.Start
}

// saw takes r as the registry on disk now; the registry lock and p.mu are
// held. Ports that are no longer the pool's reservations leave it, and the
// file is held open for current.
func (p *Pool) saw(r *Registry) {
	keep := p.free[:0]
	for _, a := range p.free {
		if p.ours(r.Get(a.Port), a.ID) {
			keep = append(keep, a)
		}
	}
	clear(p.free[len(keep):])
	p.free = keep
	p.last = r
	if p.seen != nil {
		p.seen.Close()
	}
	p.seen, p.seenInfo = nil, nil
	f, err := openNoFollow(p.Store.Path(), os.O_RDONLY, 0)
	if err != nil {
		return
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return
	}
	p.seen, p.seenInfo = f, info
}

// current reports whether the registry file is still the one the pool
// last saw: the same inode (held open, so never another file's), size and
// modification time. Every writer replaces the file by a rename.
func (p *Pool) current() bool {
	if p.seenInfo == nil {
		return false
	}
	info, err := os.Lstat(p.Store.Path())
	return err == nil && os.SameFile(info, p.seenInfo) && info.Size() == p.seenInfo.Size() &&
		info.ModTime().Equal(p.seenInfo.ModTime())
}
