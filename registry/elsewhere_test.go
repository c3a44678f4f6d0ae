package registry

import (
	"context"
	"errors"
	"testing"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Issue 23: a registry never hands out a port a registry it defers to (the
// host registry) holds: not in Allocate, not to the portserver's pool;
// exhaustion counts them apart; and that registry's lock is never taken.
func TestPortsHeldElsewhereAreNeverHandedOut(t *testing.T) {
	ctx := context.Background()
	b := testenv.Ports(t, 6)
	rg := Range{Start: b.Start, End: b.End}
	host := newStore(t)
	for _, i := range []int{0, 2, 4} {
		if _, err := host.Allocate(ctx, Request{Service: "hosted", Range: rg, Preferred: b.Port(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Held by someone else for the whole test: a reader never waits for it.
	lf, err := host.lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	mine := newStore(t)
	mine.Elsewhere = []string{host.Root}
	held, err := mine.HeldElsewhere(ctx, rg)
	if err != nil || len(held) != 3 || held[1].Port != b.Port(2) || held[1].ServiceName != "hosted" || held[1].Registry != host.Root {
		t.Fatalf("HeldElsewhere: %+v, %v", held, err)
	}
	got, err := mine.AllocateAll(ctx, Request{Service: "mine", Range: rg, Preferred: b.Port(0), Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Port != b.Port(1) || got[1].Port != b.Port(3) {
		t.Errorf("allocated %d and %d, want %d and %d", got[0].Port, got[1].Port, b.Port(1), b.Port(3))
	}
	p := &Pool{Store: mine, Range: rg, Service: "gracectl_portserver", Supervisor: probe.Self(), Size: 3, Low: 1}
	if err := p.Refill(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := p.Take(ctx)
	if err != nil || a.Port != b.Port(5) {
		t.Fatalf("the pool handed out %v (%v), want %d alone", a, err, b.Port(5))
	}
	if a, err := p.Take(ctx); err == nil {
		t.Fatalf("the pool handed out %v (%v) from the host registry's ports", a, err)
	}
	var xe *ExhaustedError
	if _, err := mine.Allocate(ctx, Request{Service: "more", Range: rg}); !errors.As(err, &xe) || xe.Elsewhere != 3 || xe.Managed != 3 {
		t.Fatalf("allocate in a full range: %v (%+v)", err, xe)
	}
}

func TestSameRoot(t *testing.T) {
	d := t.TempDir()
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{d, d + "/", true},
		{d, d + "/x/..", true},
		{d, t.TempDir(), false},
		{d + "/missing", d + "/missing/", true},
		{d + "/missing", d, false},
	} {
		if got := SameRoot(c.a, c.b); got != c.want {
			t.Errorf("SameRoot(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
