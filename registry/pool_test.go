package registry

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry/testenv"
)

// sleeper starts a process that lives until the test ends.
func sleeper(t *testing.T) probe.Identity {
	t.Helper()
	c := testenv.Command(t, "sleep", "3600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	id, err := probe.Identify(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A reservation held by a supervisor that still runs (the portserver's
// pool, gracectl run before its command is registered) is released or
// registered by anyone else only with force, and the forced register says
// so; the supervisor itself may claim it, and once it has ended anyone may.
func TestSupervisedReservationIsHeld(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sup := sleeper(t)
	b := testenv.Ports(t, 5)
	rg := Range{Start: b.Start, End: b.End}
	a, err := s.Allocate(ctx, Request{Service: "pool", Range: rg, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	var oe *OwnerAliveError
	if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Callers: []int{os.Getpid()}, By: "cli"}); !errors.As(err, &oe) || oe.PID != sup.PID {
		t.Fatalf("release without force: %v", err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Service: "pool", Callers: []int{os.Getpid()}, By: "cli"}); !errors.As(err, &oe) || oe.PID != sup.PID {
		t.Fatalf("release of the service without force: %v", err)
	}
	other := sleeper(t)
	if _, err := s.Register(ctx, Claim{Port: a.Port, Service: serviceAt(t, s, a.Port), Owner: other, Reason: "t"}); !errors.As(err, &oe) || !strings.Contains(err.Error(), "register pid "+strconv.Itoa(other.PID)) {
		t.Fatalf("register without force: %v", err)
	}
	if _, err := s.Register(ctx, Claim{Port: a.Port, Service: serviceAt(t, s, a.Port), Owner: other, Reason: "t", Force: true}); err != nil {
		t.Fatal(err)
	}
	if ev := lastEvent(t, s); !strings.Contains(ev, `"forced":true`) || !strings.Contains(ev, `"action":"register"`) {
		t.Errorf("the forced register's line: %s", ev)
	}
	// The caller's own reservation (it is the supervisor): no force.
	own, err := s.Allocate(ctx, Request{Service: "run", Range: rg, Supervisor: probe.Self()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, Claim{Port: own.Port, Service: serviceAt(t, s, own.Port), Owner: other, Reason: "t"}); err != nil {
		t.Fatalf("the supervisor registering its own reservation: %v", err)
	}
	// A supervisor that has ended holds nothing.
	dead := sup
	dead.Start++
	c, err := s.Allocate(ctx, Request{Service: "gone", Range: rg, Supervisor: dead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: c.Port, By: "cli"}); err != nil {
		t.Fatalf("release after the supervisor ended: %v", err)
	}
}

func lastEvent(t *testing.T, s *Store) string {
	t.Helper()
	r, err := s.Read(context.Background())
	if err != nil || len(r.PendingAudit) == 0 {
		t.Fatalf("no audit line (%v)", err)
	}
	return r.PendingAudit[len(r.PendingAudit)-1]
}

// Each hand-out is checked under the lock: a pool port released (and
// allocated again) or registered to another process by someone else is
// never handed out; one something else listens on is skipped and then
// released; and a port taken from the pool but registered to another
// process before Record is left to that owner, never replaced.
func TestPoolChecksEveryHandOut(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	b := testenv.Ports(t, 10)
	port := b.Port
	p := &Pool{Store: s, Range: Range{Start: b.Start, End: b.End}, Service: "gracectl_portserver", Supervisor: probe.Self(), Size: 6, Low: 2}
	first, err := p.Take(ctx) // reserves ports 0-5
	if err != nil || first.Port != port(0) {
		t.Fatalf("first take: %v, %v", first, err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: port(1), Force: true, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(ctx, Request{Service: "victim", Preferred: port(1), Range: p.Range}); err != nil {
		t.Fatal(err)
	}
	other := sleeper(t)
	if _, err := s.Register(ctx, Claim{Port: port(2), Service: serviceAt(t, s, port(2)), Owner: other, Reason: "t", Force: true}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", b.Addr(3))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	next, err := p.Take(ctx)
	if err != nil || next.Port != port(4) {
		t.Fatalf("after ports 1, 2 and 3 were released, registered and bound, the pool gave %v (%v); want port 4 (%d)", next, err, port(4))
	}
	// Port 5 is taken from the pool; before it is recorded, someone forces
	// another owner onto it.
	last, err := p.Take(ctx)
	if err != nil || last.Port != port(5) {
		t.Fatalf("third take: %v, %v", last, err)
	}
	if _, err := s.Register(ctx, Claim{Port: port(5), Service: serviceAt(t, s, port(5)), Owner: other, Reason: "t", Force: true}); err != nil {
		t.Fatal(err)
	}
	me := probe.Self()
	refused, err := p.Record(ctx, []HandOut{{Port: port(0), PoolID: first.ID, Owner: me, Service: "t"}, {Port: port(5), PoolID: last.ID, Owner: me, Service: "t"}})
	if err != nil || len(refused) != 1 || refused[0].Port != port(5) {
		t.Fatalf("record: refused %v, %v", refused, err)
	}
	r, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Get(port(5)); a == nil || int(a.PID) != other.PID {
		t.Errorf("port 5's owner was replaced: %+v", a)
	}
	if a := r.Get(port(0)); a == nil || int(a.PID) != me.PID || !a.HandedOut() {
		t.Errorf("port 0 not handed out: %+v", a)
	}
	if r.Get(port(3)) != nil {
		t.Errorf("port 3, found in use, is still reserved")
	}
	if err := p.Close(ctx, "t"); err != nil {
		t.Fatal(err)
	}
}

// serviceAt is the service that holds port now: a claim on it names it.
func serviceAt(t *testing.T, s *Store, port int) string {
	t.Helper()
	r, err := s.Read(context.Background())
	if err != nil || r.Get(port) == nil {
		t.Fatalf("port %d: %v", port, err)
	}
	return r.Get(port).ServiceName
}

// The pool keeps the registry lock file open between changes (HeldLock):
// it unlocks it after each, waits behind any other holder, and opens the
// file again once the one at the lock's path is another (removed and made
// anew), so it never locks a file nobody else does.
func TestPoolHeldLockExcludesOthers(t *testing.T) {
	s := newStore(t)
	s.LockTimeout = 200 * time.Millisecond
	ctx := context.Background()
	b := testenv.Ports(t, 10)
	p := &Pool{Store: s, Range: Range{Start: b.Start, End: b.End}, Service: "gracectl_portserver", Supervisor: probe.Self(), Size: 6, Low: 2}
	defer p.Close(ctx, "t")
	if _, err := p.Take(ctx); err != nil {
		t.Fatal(err)
	}
	hold := func() *Lock {
		t.Helper()
		l, err := s.NewLock(s.LockPath())
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := l.TryLock(); !ok || err != nil {
			t.Fatalf("the pool kept the registry locked after its change: %v, %v", ok, err)
		}
		return l
	}
	other := hold()
	var le *LockError
	if _, err := p.Take(ctx); !errors.As(err, &le) {
		t.Fatalf("take while another process holds the lock: %v, want a lock timeout", err)
	}
	other.Close()
	if _, err := p.Take(ctx); err != nil {
		t.Fatalf("take once the lock is free: %v", err)
	}
	hold().Close()
	// The lock file is removed and made anew: the pool must lock the new one.
	if err := os.Remove(s.LockPath()); err != nil {
		t.Fatal(err)
	}
	other = hold()
	if _, err := p.Take(ctx); !errors.As(err, &le) {
		t.Fatalf("take while another process holds the new lock file: %v, want a lock timeout", err)
	}
	other.Close()
	if _, err := p.Take(ctx); err != nil {
		t.Fatalf("take once the new lock is free: %v", err)
	}
}
