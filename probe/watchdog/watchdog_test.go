package watchdog

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Ports: each test takes its own from testenv.Ports.

func newStore(t testing.TB) *registry.Store {
	return registry.Open(t.TempDir(), 10*time.Second)
}

// serve starts an HTTP server on 127.0.0.1:port in this process.
func serve(t testing.TB, port int, h http.Handler) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func allocate(t testing.TB, s *registry.Store, port int, owner probe.Identity, healthPath string) *registry.Allocation {
	t.Helper()
	a, err := s.Allocate(context.Background(), registry.Request{
		Service: "svc" + strconv.Itoa(port), Range: registry.Range{Start: port, End: port},
		Owner: owner, HealthPath: healthPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func result(t *testing.T, rep *Report, port int) *Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Port == port {
			return r
		}
	}
	t.Fatalf("no result for port %d", port)
	return nil
}

func get(t *testing.T, s *registry.Store, port int) *registry.Allocation {
	t.Helper()
	r, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r.Get(port)
}

// A service killed with SIGKILL is found dead and its port released, with
// a release line by the watchdog.
func TestDeadServiceReleased(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	c := testenv.Command(t, "sleep", "600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := probe.Identify(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	allocate(t, s, ports.Port(0), id, "")
	c.Process.Kill()
	c.Wait()
	rep, err := Cycle(context.Background(), s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := result(t, rep, ports.Port(0))
	if r.Status != registry.StatusDead || r.Action != "released" || rep.Dead != 1 || rep.Issues != 1 {
		t.Fatalf("result %+v, report %+v", r, rep)
	}
	if get(t, s, ports.Port(0)) != nil {
		t.Fatal("dead service's port not released")
	}
}

// A recorded start time that does not match the live process is a reused
// PID: dead, not alive.
func TestReusedPIDIsDead(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	self := probe.Self()
	self.Start++
	allocate(t, s, ports.Port(0), self, "")
	rep, err := Cycle(context.Background(), s, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, rep, ports.Port(0)); r.Alive || r.Status != registry.StatusDead {
		t.Fatalf("reused pid taken for alive: %+v", r)
	}
	if get(t, s, ports.Port(0)) == nil {
		t.Fatal("--dry-run changed the registry")
	}
}

// A failing health endpoint gives unhealthy after N failures in a row, and
// the port is kept; counts from the JSON body are recorded.
func TestUnhealthyAfterNFailures(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	allocate(t, s, ports.Port(0), probe.Self(), "/health")
	var fail atomic.Bool
	fail.Store(true)
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"status":"down","request_count":5,"error_count":2}`)
			return
		}
		fmt.Fprint(w, `{"status":"ok","request_count":1247,"error_count":3}`)
	}))
	opts := Options{UnhealthyAfter: 3, HealthTimeout: testenv.Scale(30 * time.Second)}
	for i := 1; i <= 3; i++ {
		rep, err := Cycle(context.Background(), s, opts)
		if err != nil {
			t.Fatal(err)
		}
		r := result(t, rep, ports.Port(0))
		want := registry.StatusActive
		if i == 3 {
			want = registry.StatusUnhealthy
		}
		if r.Status != want || (i == 3) != (r.Issue != "") {
			t.Fatalf("cycle %d: %+v", i, r)
		}
	}
	a := get(t, s, ports.Port(0))
	if a == nil || a.HealthStatus != registry.StatusUnhealthy || a.HealthFailures != 3 || a.RequestCount != 5 {
		t.Fatalf("registry after 3 failures: %+v", a)
	}
	fail.Store(false)
	if _, err := Cycle(context.Background(), s, opts); err != nil {
		t.Fatal(err)
	}
	a = get(t, s, ports.Port(0))
	if a.HealthStatus != registry.StatusActive || a.HealthFailures != 0 || a.RequestCount != 1247 || a.ErrorCount != 3 || a.LastHealthCheck.IsZero() {
		t.Fatalf("registry after recovery: %+v", a)
	}
}

// Statuses of the other kinds: starting, not_listening, reserved (and its
// lease), orphaned, and a foreign listener.
func TestStatuses(t *testing.T) {
	ports := testenv.Ports(t, 3)
	s := newStore(t)
	self := probe.Self()
	allocate(t, s, ports.Port(0), self, "")             // alive, not listening, in grace: starting
	allocate(t, s, ports.Port(1), probe.Identity{}, "") // reservation
	sl := testenv.Command(t, "sleep", "600")            // dead owner, someone listens: orphaned
	sl.Start()
	deadID, _ := probe.Identify(sl.Process.Pid)
	sl.Process.Kill()
	sl.Wait()
	allocate(t, s, ports.Port(2), deadID, "")
	serve(t, ports.Port(2), http.NotFoundHandler())
	rep, err := Cycle(context.Background(), s, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int]string{ports.Port(0): registry.StatusStarting, ports.Port(1): registry.StatusReserved, ports.Port(2): registry.StatusOrphaned} {
		if r := result(t, rep, port); r.Status != want {
			t.Errorf("port %d: %s, want %s (%+v)", port, r.Status, want, r)
		}
	}
	if r := result(t, rep, ports.Port(2)); r.Issue == "" || r.Action != "" {
		t.Errorf("orphaned port: issue %q action %q", r.Issue, r.Action)
	}
	// Past the grace period and the lease.
	rep, err = Cycle(context.Background(), s, Options{StartupGrace: time.Nanosecond, ReservationLease: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, rep, ports.Port(0)); r.Status != registry.StatusNotListening || r.Issue == "" {
		t.Errorf(ports.P(0)+": %+v", r)
	}
	if r := result(t, rep, ports.Port(1)); r.Action != "released" {
		t.Errorf("stale reservation not released: %+v", r)
	}
	if r := result(t, rep, ports.Port(2)); r.Action != "" || get(t, s, ports.Port(2)) == nil {
		t.Errorf("an orphaned port was released: %+v", r)
	}
	if get(t, s, ports.Port(0)) == nil {
		t.Errorf("a live owner's port was released")
	}
}

// A port released and re-allocated while a cycle probes it is left as it
// now is: the race is made to happen with a health endpoint that answers
// only after the change.
func TestProbeReleaseRace(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	allocate(t, s, ports.Port(0), probe.Self(), "/health")
	entered := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		<-proceed
		fmt.Fprint(w, `{"request_count": 99, "error_count": 9}`)
	}))
	done := make(chan *Report)
	go func() {
		rep, err := Cycle(context.Background(), s, Options{HealthTimeout: testenv.Scale(30 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	<-entered
	// While the probe waits: release the port and hand it to someone else.
	if _, err := s.Release(context.Background(), registry.ReleaseRequest{Port: ports.Port(0), Force: true, By: "test", Reason: "race"}); err != nil {
		t.Fatal(err)
	}
	// (Written directly: allocate would skip the port, since the test's
	// server still listens on it.)
	self := probe.Self()
	if err := s.Update(context.Background(), func(r *registry.Registry, tx *registry.Tx) error {
		r.Put(&registry.Allocation{ID: "newcomer", Port: ports.Port(0), ServiceName: "newcomer", PID: registry.OwnerPID(self.PID), PIDStart: self.Start,
			BootID: self.Boot, AllocatedAt: tx.Now(), HealthStatus: registry.StatusStarting})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	rep := <-done
	if r := result(t, rep, ports.Port(0)); r.Action != "skipped: changed during the cycle" {
		t.Fatalf("result %+v", r)
	}
	a := get(t, s, ports.Port(0))
	if a.ServiceName != "newcomer" || a.RequestCount != 0 || !a.LastHealthCheck.IsZero() || a.HealthStatus != registry.StatusStarting {
		t.Fatalf("the new allocation was overwritten by the old probe: %+v", a)
	}
}

// 101 allocations, 50 with hanging health endpoints: every hanging probe is
// in flight at the same time (so the cycle takes about one timeout, not 50),
// and the healthy ones are all answered.
func TestHangingEndpointsRunInParallel(t *testing.T) {
	ports := testenv.Ports(t, 101)
	s := newStore(t)
	var inflight, peak atomic.Int64
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-r.Context().Done()
		inflight.Add(-1)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"status":"ok"}`) })
	for i := 0; i < 101; i++ {
		port := ports.Port(0) + i
		allocate(t, s, port, probe.Self(), "/health")
		if i < 50 {
			serve(t, port, hang)
		} else {
			serve(t, port, ok)
		}
	}
	// Generous, so that a loaded machine (load 60 seen) still starts all 50
	// hanging requests, and answers the 51 others, before the first one
	// times out; the cycle takes this long whatever the load.
	timeout := testenv.Scale(15 * time.Second)
	rep, err := Cycle(context.Background(), s, Options{HealthTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 50 {
		t.Fatalf("at most %d hanging probes were in flight at once, want all 50", peak.Load())
	}
	for _, r := range rep.Results {
		want := "ok"
		if r.Port < ports.Port(50) {
			want = "failing (1/3): timed out"
		}
		if r.Health != want {
			t.Fatalf("port %d: health %q, want %q", r.Port, r.Health, want)
		}
	}
	t.Logf("cycle took %.0f ms with a %s timeout", rep.DurationMS, timeout)
}

func TestHealthNoRedirectOffPort(t *testing.T) {
	ports := testenv.Ports(t, 2)
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:"+ports.P(1)+"/health", http.StatusFound)
	}))
	var hit atomic.Bool
	serve(t, ports.Port(1), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Store(true) }))
	h := probe.CheckHealth(context.Background(), ports.Port(0), "/health", time.Second)
	if h.OK || hit.Load() {
		t.Fatalf("redirect to another port followed: %+v", h)
	}
}

func TestHealthEndlessBodyIsBounded(t *testing.T) {
	ports := testenv.Ports(t, 1)
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	h := probe.CheckHealth(context.Background(), ports.Port(0), "/health", testenv.Scale(30*time.Second))
	if !h.OK {
		t.Fatalf("a 200 with an endless body: %+v", h)
	}
}

// An endpoint that sends its headers and then hangs: the check ends within
// its timeout.
func TestHealthHangAfterHeaders(t *testing.T) {
	ports := testenv.Ports(t, 1)
	release := make(chan struct{})
	defer close(release)
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	done := make(chan probe.HealthResult, 1)
	go func() {
		done <- probe.CheckHealth(context.Background(), ports.Port(0), "/health", 300*time.Millisecond)
	}()
	select {
	case h := <-done:
		if h.OK || h.Err == "" {
			t.Fatalf("a body that never ends counted as healthy: %+v", h)
		}
	case <-time.After(testenv.Scale(60 * time.Second)):
		t.Fatal("the health check did not respect its timeout")
	}
}

// Triggers that arrive while a cycle runs join it instead of starting
// another: the endpoint is probed once and both callers get one report.
func TestTriggersJoinRunningCycle(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	allocate(t, s, ports.Port(0), probe.Self(), "/health")
	var hits atomic.Int64
	entered := make(chan struct{}, 10)
	proceed := make(chan struct{})
	serve(t, ports.Port(0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		entered <- struct{}{}
		<-proceed
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	w := &Watcher{Store: s, Options: Options{HealthTimeout: testenv.Scale(30 * time.Second)}}
	reps := make(chan *Report, 2)
	go func() { r, _ := w.Trigger(context.Background()); reps <- r }()
	<-entered // the first cycle is probing
	go func() { r, _ := w.Trigger(context.Background()); reps <- r }()
	// Wait until the second trigger has joined, then let the probe answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		joined := w.flight != nil && w.flight.joined == 1
		w.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second trigger never joined the running cycle")
		}
		time.Sleep(time.Millisecond)
	}
	close(proceed)
	a, b := <-reps, <-reps
	if a == nil || a != b || hits.Load() != 1 {
		t.Fatalf("two triggers: reports %p and %p, %d probes; want one shared cycle", a, b, hits.Load())
	}
}
