package watchdog

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// TestDecide has rows for the rules of docs/health-status.md: the
// transitions between statuses, the start-up grace, the reservation lease,
// orphaned and foreign listeners and dead owners. It checks that every
// status the document names has at least one row; it cannot check that
// every sentence of the document has one.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) registry.Time { return registry.Time{Time: now.Add(-d)} }
	opts := Options{}
	opts.fill()
	n := func(v int64) *int64 { return &v }
	reserved := func(age time.Duration) registry.Allocation {
		return registry.Allocation{Port: 25990, ServiceName: "r", AllocatedAt: ago(age), HealthStatus: registry.StatusReserved}
	}
	owned := func(age time.Duration) registry.Allocation {
		return registry.Allocation{Port: 25991, ServiceName: "s", PID: 4242, AllocatedAt: ago(age), RegisteredAt: ago(age),
			HealthStatus: registry.StatusStarting, RequestCount: 7, ErrorCount: 1}
	}
	withHealth := func(a registry.Allocation, failures int) registry.Allocation {
		a.HealthPath, a.HealthFailures = "/health", failures
		return a
	}
	handedOut := func(age time.Duration) registry.Allocation {
		a := owned(age)
		a.StartedBy, a.ServiceName = registry.PortserverStartedBy, "python3"
		return a
	}
	web := &registry.Container{ID: "0123456789abcdef", Name: "web", Image: "bb:local", Engine: "docker", Socket: "/run/docker.sock"}
	ofContainer := func(a registry.Allocation, untilRemoved bool) registry.Allocation {
		c := *web
		c.UntilRemoved = untilRemoved
		a.Container = &c
		return a
	}
	stoppedKept := ofContainer(owned(time.Hour), true)
	stoppedKept.PID = 0
	down := func(exists bool) *container.State {
		return &container.State{Info: container.Info{ID: web.ID, Name: "web"}, Exists: exists, ExitCode: 137}
	}
	unregistered := owned(10 * time.Second)
	unregistered.RegisteredAt = registry.Time{}
	oldUnregistered := owned(10 * time.Minute)
	oldUnregistered.RegisteredAt = registry.Time{}

	rows := []struct {
		name    string
		a       registry.Allocation
		ob      Observation
		status  string
		health  string // prefix
		issue   string // substring; "" means no issue
		release string // substring; "" means not released
		check   func(t *testing.T, v Verdict)
	}{
		{name: "reserved within the lease", a: reserved(time.Minute),
			status: registry.StatusReserved, health: "skipped"},
		{name: "reserved past the lease, nothing listens: stale, released", a: reserved(6 * time.Minute),
			status: registry.StatusReserved, health: "skipped", issue: "stale reservation: never claimed, its 5m0s lease ran out (allocated 6m0s ago)", release: "lease ran out"},
		{name: "reserved without allocated_at: no lease to count, stale, no made-up age", a: registry.Allocation{Port: 25990, ServiceName: "r", HealthStatus: registry.StatusReserved},
			status: registry.StatusReserved, health: "skipped", issue: "lease ran out (allocated at an unknown time)", release: "lease ran out"},
		{name: "reserved past the lease, its supervisor alive (the portserver's pool): kept", a: reserved(6 * time.Minute), ob: Observation{Supervised: true},
			status: registry.StatusReserved, health: "skipped"},
		{name: "reserved past the lease, listening: kept", a: reserved(6 * time.Minute), ob: Observation{Listening: true},
			status: registry.StatusReserved, health: "skipped"},
		{name: "starting: alive, not listening, within the grace", a: owned(10 * time.Second), ob: Observation{Alive: true},
			status: registry.StatusStarting, health: "skipped"},
		{name: "starting: grace from allocation when never registered", a: unregistered, ob: Observation{Alive: true},
			status: registry.StatusStarting, health: "skipped"},
		{name: "not_listening: alive, past the grace", a: owned(2 * time.Minute), ob: Observation{Alive: true},
			status: registry.StatusNotListening, health: "skipped", issue: "non-responsive port"},
		{name: "not_listening: never registered, old allocation", a: oldUnregistered, ob: Observation{Alive: true},
			status: registry.StatusNotListening, health: "skipped", issue: "non-responsive port"},
		{name: "active: alive and listening, no health path", a: owned(time.Hour), ob: Observation{Alive: true, Listening: true},
			status: registry.StatusActive, health: "none"},
		{name: "active: health endpoint answers, counts taken, failures reset", a: withHealth(owned(time.Hour), 2),
			ob:     Observation{Alive: true, Listening: true, Health: &probe.HealthResult{OK: true, RequestCount: n(100), ErrorCount: n(3)}},
			status: registry.StatusActive, health: "ok",
			check: func(t *testing.T, v Verdict) {
				if v.Failures != 0 || !v.Counts || v.RequestCount != 100 || v.ErrorCount != 3 {
					t.Errorf("verdict %+v", v)
				}
			}},
		{name: "active: one failed health check is not an alarm", a: withHealth(owned(time.Hour), 0),
			ob:     Observation{Alive: true, Listening: true, Health: &probe.HealthResult{Err: "HTTP 500"}},
			status: registry.StatusActive, health: "failing (1/3): HTTP 500",
			check: func(t *testing.T, v Verdict) {
				if v.Failures != 1 || v.LastError != "HTTP 500" || v.Counts || v.RequestCount != 7 {
					t.Errorf("verdict %+v", v)
				}
			}},
		{name: "unhealthy: N failures in a row, never released", a: withHealth(owned(time.Hour), 2),
			ob:     Observation{Alive: true, Listening: true, Health: &probe.HealthResult{Err: "timeout"}},
			status: registry.StatusUnhealthy, health: "failing (3/3)", issue: "failed health check: timeout, 3 times in a row"},
		{name: "unhealthy back to active", a: withHealth(owned(time.Hour), 5),
			ob:     Observation{Alive: true, Listening: true, Health: &probe.HealthResult{OK: true}},
			status: registry.StatusActive, health: "ok"},
		{name: "dead: owner gone, nothing listens: released", a: owned(time.Hour), ob: Observation{},
			status: registry.StatusDead, health: "skipped", issue: "crashed process: owner pid 4242 is gone", release: "owner pid 4242 is gone"},
		{name: "portserver client exited, nothing listens: an ordinary release, no issue", a: handedOut(time.Hour), ob: Observation{},
			status: registry.StatusStarting, health: "skipped", release: "the client exited",
			check: func(t *testing.T, v Verdict) {
				if !v.Ended {
					t.Errorf("not an ended owner: %+v", v)
				}
			}},
		{name: "portserver client alive, not listening past the grace: no issue", a: handedOut(time.Hour), ob: Observation{Alive: true},
			status: registry.StatusNotListening, health: "skipped"},
		{name: "portserver client exited, something still listens: orphaned", a: handedOut(time.Hour), ob: Observation{Listening: true},
			status: registry.StatusOrphaned, health: "skipped", issue: "orphaned"},
		{name: "owner gone, its gracectl run gone, a process the service started lives and does not listen yet: the port is its", a: owned(time.Hour),
			ob: Observation{Heir: probe.Identity{PID: 4343, Start: 9}}, status: registry.StatusStarting, health: "skipped",
			check: func(t *testing.T, v Verdict) {
				if v.Owner == nil || v.Owner.PID != 4343 || !v.Heir || v.Release != "" {
					t.Errorf("verdict %+v: want the heir as the owner, no release", v)
				}
			}},
		{name: "owner gone, its gracectl run gone, the service's heir listens: active, the heir's", a: owned(time.Hour),
			ob: Observation{Heir: probe.Identity{PID: 4343, Start: 9}, Listening: true, Listeners: []int{4343}}, status: registry.StatusActive, health: "skipped"},
		{name: "a run's reservation, run killed before it registered its command, the service's heir listens: active, the heir's",
			a:  func() registry.Allocation { r := reserved(time.Second); r.DescendantMark = "mark"; return r }(),
			ob: Observation{Heir: probe.Identity{PID: 4343, Start: 9}, Listening: true, Listeners: []int{4343}}, status: registry.StatusActive, health: "skipped",
			check: func(t *testing.T, v Verdict) {
				if v.Owner == nil || v.Owner.PID != 4343 || !v.Heir || v.Release != "" || !strings.Contains(v.OwnerReason, "before it registered") {
					t.Errorf("verdict %+v: want the heir as the owner, no release", v)
				}
			}},
		{name: "owner gone, its gracectl run still supervises: left to run", a: owned(time.Hour), ob: Observation{Supervised: true},
			status: registry.StatusStarting, health: "skipped"},
		{name: "orphaned: owner gone, a named process listens: kept", a: owned(time.Hour),
			ob:     Observation{Listening: true, Listeners: []int{777}, Foreign: 777, ForeignName: "python3"},
			status: registry.StatusOrphaned, health: "skipped", issue: "pid 777 (python3) still listens",
			check: func(t *testing.T, v Verdict) {
				if v.ListenerPID != 777 || v.ListenerName != "python3" {
					t.Errorf("listener not recorded: %+v", v)
				}
			}},
		{name: "orphaned: listener unknown (no /proc)", a: owned(time.Hour), ob: Observation{Listening: true},
			status: registry.StatusOrphaned, health: "skipped", issue: "an unknown process still listens"},
		{name: "unverifiable owner (another PID namespace), listening: kept", a: owned(time.Hour),
			ob:     Observation{OwnerUnknown: true, Listening: true},
			status: registry.StatusActive, health: "skipped"},
		{name: "unverifiable owner, not listening, within the lease: kept", a: owned(time.Minute),
			ob:     Observation{OwnerUnknown: true},
			status: registry.StatusNotListening, health: "skipped", issue: "unverifiable owner: pid 4242"},
		{name: "unverifiable owner, not listening past the lease: released, saying why", a: owned(time.Hour),
			ob:     Observation{OwnerUnknown: true},
			status: registry.StatusNotListening, health: "skipped", issue: "unverifiable owner", release: "cannot be verified (another PID namespace)"},
		{name: "active in another network namespace: no health check from here", a: withHealth(owned(time.Hour), 0),
			ob:     Observation{Alive: true, Listening: true, OtherNetNS: 4026532000},
			status: registry.StatusActive, health: "skipped: listens in network namespace 4026532000"},
		{name: "foreign listener while the owner is alive", a: owned(time.Hour),
			ob:     Observation{Alive: true, Listening: true, Listeners: []int{888}, Foreign: 888},
			status: registry.StatusActive, health: "none", issue: "port served by pid 888, which is not the owner (pid 4242)"},
		{name: "container running: active, its proxy is its own listener", a: ofContainer(owned(time.Hour), false),
			ob:     Observation{Alive: true, Listening: true, Container: &container.State{Info: container.Info{PID: 4242}, Exists: true, Running: true, Ports: []int{25991}}},
			status: registry.StatusActive, health: "none"},
		{name: "container restarted: active under its new main process", a: ofContainer(owned(time.Hour), true),
			ob:     Observation{Alive: true, Listening: true, Container: &container.State{Info: container.Info{PID: 5151}, Exists: true, Running: true}, NewOwner: &probe.Identity{PID: 5151}},
			status: registry.StatusActive, health: "none",
			check: func(t *testing.T, v Verdict) {
				if v.Owner == nil || v.Owner.PID != 5151 || !strings.Contains(v.OwnerReason, "restarted") {
					t.Errorf("new owner not taken: %+v", v)
				}
			}},
		{name: "container exited: dead, released", a: ofContainer(owned(time.Hour), false), ob: Observation{Container: down(true)},
			status: registry.StatusDead, health: "skipped", issue: "container stopped: container web exited with status 137", release: "container web exited with status 137"},
		{name: "container exited while its proxy still closes: released all the same", a: ofContainer(owned(time.Hour), false),
			ob:     Observation{Listening: true, Listeners: []int{999}, Container: down(true)},
			status: registry.StatusDead, health: "skipped", issue: "container stopped", release: "exited"},
		{name: "container removed: dead, released", a: ofContainer(owned(time.Hour), true), ob: Observation{Container: down(false)},
			status: registry.StatusDead, health: "skipped", issue: "container gone: container web was removed", release: "container web was removed"},
		{name: "container stopped, kept until removed: reserved, no owner process", a: ofContainer(owned(time.Hour), true), ob: Observation{Container: down(true)},
			status: registry.StatusReserved, health: "skipped: container web is stopped",
			check: func(t *testing.T, v Verdict) {
				if v.Owner == nil || v.Owner.PID != 0 {
					t.Errorf("owner not cleared: %+v", v)
				}
			}},
		{name: "stopped container kept, past the lease: no lease runs out", a: stoppedKept, ob: Observation{Container: down(true)},
			status: registry.StatusReserved, health: "skipped: container web is stopped"},
		{name: "stopped container kept, engine cannot be asked: kept", a: stoppedKept, ob: Observation{},
			status: registry.StatusReserved, health: "skipped: the container engine cannot be asked"},
		{name: "container kept until removed, main process gone, engine cannot be asked: kept, no owner process", a: ofContainer(owned(time.Hour), true), ob: Observation{},
			status: registry.StatusReserved, health: "skipped: the container engine cannot be asked"},
		{name: "container not kept, main process gone, engine cannot be asked: released as a dead owner", a: ofContainer(owned(time.Hour), false), ob: Observation{},
			status: registry.StatusDead, health: "skipped", issue: "crashed process", release: "owner pid 4242 is gone"},
		{name: "container restarting (restart policy): starting", a: ofContainer(owned(time.Hour), false),
			ob:     Observation{Container: &container.State{Exists: true, Restarting: true}},
			status: registry.StatusStarting, health: "skipped: container web is restarting"},
		{name: "container stopped while its gracectl run settles: left to run", a: ofContainer(owned(time.Hour), false),
			ob:     Observation{Supervised: true, Container: down(true)},
			status: registry.StatusStarting, health: "skipped"},
		{name: "another container's proxy serves the port: named", a: owned(time.Hour),
			ob: Observation{Alive: true, Listening: true, Listeners: []int{888}, Foreign: 888, ForeignName: "docker-proxy",
				ForeignContainer: &container.Info{ID: "feedfacefeedface", Name: "other", Image: "nginx"}},
			status: registry.StatusActive, health: "none", issue: "port served by container other (nginx) through pid 888 (docker-proxy), which is not the owner (pid 4242)"},
		{name: "another container publishes the port through NAT alone: named", a: owned(time.Hour),
			ob: Observation{Alive: true, Listening: true, Listeners: []int{4242},
				NATContainer: &container.Info{ID: "feedfacefeedface", Name: "other", Image: "nginx"}},
			status: registry.StatusActive, health: "none", issue: "port also published by container other (nginx) through NAT rules alone"},
		{name: "a failing health check outranks the foreign listener", a: withHealth(owned(time.Hour), 2),
			ob:     Observation{Alive: true, Listening: true, Foreign: 888, Health: &probe.HealthResult{Err: "HTTP 503"}},
			status: registry.StatusUnhealthy, health: "failing", issue: "failed health check"},
	}
	// Every status of docs/health-status.md has a row.
	doc, err := os.ReadFile("../../docs/health-status.md")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, row := range rows {
		covered[row.status] = true
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		if !covered[m[1]] {
			t.Errorf("docs/health-status.md has status %q, which no row of this test covers", m[1])
		}
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			v := decide(&row.a, row.ob, now, opts)
			if v.Status != row.status {
				t.Errorf("status %q, want %q", v.Status, row.status)
			}
			if !strings.HasPrefix(v.Health, row.health) {
				t.Errorf("health %q, want %q…", v.Health, row.health)
			}
			if (row.issue == "") != (v.Issue == "") || !strings.Contains(v.Issue, row.issue) {
				t.Errorf("issue %q, want %q", v.Issue, row.issue)
			}
			if (row.release == "") != (v.Release == "") || !strings.Contains(v.Release, row.release) {
				t.Errorf("release %q, want %q", v.Release, row.release)
			}
			if row.check != nil {
				row.check(t, v)
			}
		})
	}
}
