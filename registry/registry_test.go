package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gracectl/gracectl/probe"

	"github.com/gracectl/gracectl/registry/testenv"
)

// A release by allocation id gives back only that allocation: once the
// port has changed hands, the late release of the old one is no change.
func TestReleaseByIDSparesTheNextHolder(t *testing.T) {
	ports := testenv.Ports(t, 1)
	s := newStore(t)
	ctx := context.Background()
	first, err := s.Allocate(ctx, Request{Service: "first", Range: Range(ports)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: first.Port, Force: true, By: "cli", Reason: "t"}); err != nil {
		t.Fatal(err)
	}
	next, err := s.Allocate(ctx, Request{Service: "next", Range: Range(ports)})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := s.Release(ctx, ReleaseRequest{Port: first.Port, Force: true, By: "run", Reason: "late", ID: first.ID})
	if err != nil || len(rel) != 0 {
		t.Fatalf("late release of %s: released %v, err %v; want no change", first.ID, rel, err)
	}
	r, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Get(next.Port); a == nil || a.ID != next.ID {
		t.Fatalf("port %d after the late release: %+v, want %s", next.Port, a, next.ID)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: next.Port, Force: true, By: "run", Reason: "t", ID: next.ID}); err != nil {
		t.Fatalf("release of the holder by its own id: %v", err)
	}
}

// Ports: each test takes its own from testenv.Ports.

func newStore(t *testing.T) *Store {
	t.Helper()
	return Open(t.TempDir(), 2*time.Second)
}

func writeRegistry(t *testing.T, s *Store, content string) {
	t.Helper()
	if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const seedRegistry = `{
  "allocations": {
    "8000": {
      "port": 8000,
      "service_name": "grace_backend",
      "started_by": "serve.py",
      "purpose": "Main Grace API server",
      "pid": 12345,
      "allocated_at": "2025-11-15T14:30:00Z",
      "health_status": "active",
      "x_team": {"owner": "ops", "tags": [1, 2]}
    }
  },
  "last_updated": "2025-11-15T14:35:00Z",
  "x_host": "alpha"
}`

func TestParseSeedAndRoundTrip(t *testing.T) {
	r, err := Parse([]byte(seedRegistry))
	if err != nil {
		t.Fatal(err)
	}
	a := r.Get(8000)
	if a == nil || a.ServiceName != "grace_backend" || a.PID != 12345 || a.AllocatedAt.String() != "2025-11-15T14:30:00Z" {
		t.Fatalf("parsed %+v", a)
	}
	out, err := MarshalIndented(r)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	out2, _ := MarshalIndented(r2)
	if string(out) != string(out2) {
		t.Fatalf("round trip not stable:\n%s\n%s", out, out2)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["x_host"] != "alpha" {
		t.Errorf("unknown top-level field lost: %s", out)
	}
	alloc := m["allocations"].(map[string]any)["8000"].(map[string]any)
	if alloc["x_team"].(map[string]any)["owner"] != "ops" {
		t.Errorf("unknown allocation field lost: %s", out)
	}
}

func TestUnknownFieldsSurviveUpdate(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	writeRegistry(t, s, seedRegistry)
	if _, err := s.Allocate(context.Background(), Request{Service: "x", Range: Range(ports)}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.Path())
	for _, want := range []string{`"x_host": "alpha"`, `"x_team"`, `"owner": "ops"`, `"` + ports.P(0) + `"`, `"grace_backend"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("registry lost %s:\n%s", want, data)
		}
	}
}

func TestBadRegistryIsRefusedAndUntouched(t *testing.T) {
	ports := testenv.Ports(t, 10)
	cases := map[string]string{
		"not json":         `{"allocations": {`,
		"empty":            ``,
		"array":            `[]`,
		"null":             `null`,
		"port string":      `{"allocations": {"8000": {"port": "8000", "service_name": "a"}}}`,
		"pid string":       `{"allocations": {"8000": {"port": 8000, "service_name": "a", "pid": "12"}}}`,
		"key mismatch":     `{"allocations": {"8001": {"port": 8000, "service_name": "a"}}}`,
		"bad key":          `{"allocations": {"http": {"port": 8000, "service_name": "a"}}}`,
		"no service":       `{"allocations": {"8000": {"port": 8000}}}`,
		"allocations arr":  `{"allocations": []}`,
		"bad time":         `{"allocations": {"8000": {"port": 8000, "service_name": "a", "allocated_at": "yesterday"}}}`,
		"null allocation":  `{"allocations": {"8000": null}}`,
		"trailing":         `{"allocations": {}} {}`,
		"leading zero key": `{"allocations": {"08000": {"port": 8000, "service_name": "a"}}}`,
		"key zero":         `{"allocations": {"0": {"port": 0, "service_name": "a"}}}`,
		"key too big":      `{"allocations": {"70000": {"port": 70000, "service_name": "a"}}}`,
		"february 30":      `{"allocations": {"8000": {"port": 8000, "service_name": "a", "allocated_at": "2026-02-30T00:00:00Z"}}}`,
		"hour 24":          `{"allocations": {"8000": {"port": 8000, "service_name": "a", "allocated_at": "2026-01-01T24:00:00Z"}}}`,
		"port overflow":    `{"allocations": {"8000": {"port": 99999999999999999999, "service_name": "a"}}}`,
		"duplicate key":    `{"allocations": {"8000": {"port": 8000, "service_name": "a"}, "8000": {"port": 8000, "service_name": "b"}}}`,
		"duplicate field":  `{"allocations": {"8000": {"port": 8000, "service_name": "a", "service_name": "b"}}}`,
		"duplicate top":    `{"allocations": {}, "allocations": {}}`,
		"invalid utf-8":    "{\"allocations\": {\"8000\": {\"port\": 8000, \"service_name\": \"a\xff\"}}}",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			writeRegistry(t, s, content)
			before, _ := os.ReadFile(s.Path())
			_, err := s.Allocate(context.Background(), Request{Service: "x", Range: Range(ports)})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("want CorruptError, got %v", err)
			}
			if !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("error does not name the file: %v", err)
			}
			after, _ := os.ReadFile(s.Path())
			if string(before) != string(after) {
				t.Errorf("file changed:\n%q\n%q", before, after)
			}
			if _, err := s.Read(context.Background()); err == nil {
				t.Errorf("Read accepted a bad registry")
			}
			if _, err := os.Stat(LogPath(s.LogDir(), time.Now())); err == nil {
				t.Errorf("a log line was written for a failed change")
			}
		})
	}
}

func TestPermissionsKept(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	if _, err := s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)}); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(s.Path())
	if info.Mode().Perm() != 0o644 {
		t.Fatalf("new registry is %v, want 0644", info.Mode().Perm())
	}
	if err := os.Chmod(s.Path(), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(context.Background(), Request{Service: "b", Range: Range(ports)}); err != nil {
		t.Fatal(err)
	}
	info, _ = os.Stat(s.Path())
	if info.Mode().Perm() != 0o640 {
		t.Fatalf("rewritten registry is %v, want 0640", info.Mode().Perm())
	}
	// No temp files are left behind.
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestAllocatePreferredNextAndWrap(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	ctx := context.Background()
	r := Range(ports)
	got := func(pref int) int {
		a, err := s.Allocate(ctx, Request{Service: "s", Range: r, Preferred: pref})
		if err != nil {
			t.Fatal(err)
		}
		return a.Port
	}
	if p := got(0); p != ports.Port(0) {
		t.Fatalf("first = %d", p)
	}
	if p := got(ports.Port(0)); p != ports.Port(1) {
		t.Fatalf("next = %d", p)
	}
	if p := got(ports.Port(8)); p != ports.Port(8) {
		t.Fatalf("preferred = %d", p)
	}
	if p := got(ports.Port(9)); p != ports.Port(9) {
		t.Fatalf("preferred = %d", p)
	}
	if p := got(ports.Port(9)); p != ports.Port(2) {
		t.Fatalf("wrap = %d, want %d", p, ports.Port(2))
	}
}

func TestAllocateSkipsUnmanagedListeners(t *testing.T) {
	ports := testenv.Ports(t, 10)
	for _, host := range []string{"127.0.0.1", "::1", "0.0.0.0"} {
		t.Run(host, func(t *testing.T) {
			if host == "::1" && !probe.HasIPv6() {
				t.Skip("no IPv6 on this host")
			}
			s := newStore(t)
			r := Range(ports)
			l, err := net.Listen("tcp", net.JoinHostPort(host, ports.P(0)))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			a, err := s.Allocate(context.Background(), Request{Service: "s", Range: r})
			if err != nil {
				t.Fatal(err)
			}
			if a.Port != ports.Port(1) {
				t.Fatalf("got %d, want %d (%d is served by %s)", a.Port, ports.Port(1), ports.Port(0), host)
			}
		})
	}
}

func TestExhausted(t *testing.T) {
	ports := testenv.Ports(t, 3)
	s := newStore(t)
	r := Range{Start: ports.Port(0), End: ports.Port(2)}
	l, err := net.Listen("tcp", ports.Addr(2))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 2; i++ {
		if _, err := s.Allocate(context.Background(), Request{Service: "s", Range: r}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(s.Path())
	_, err = s.Allocate(context.Background(), Request{Service: "s", Range: r})
	var xe *ExhaustedError
	if !errors.As(err, &xe) || xe.Managed != 2 || xe.Unmanaged != 1 {
		t.Fatalf("got %v (%+v)", err, xe)
	}
	if !strings.Contains(err.Error(), ports.String()) {
		t.Errorf("error does not name the range: %v", err)
	}
	after, _ := os.ReadFile(s.Path())
	if string(before) != string(after) {
		t.Errorf("registry changed on a failed allocation")
	}
}

// A range full of dead owners' ports does not wait for the watchdog:
// allocate releases the dead (with a release line saying why) and hands one
// out. Live owners and ports something listens on are never reclaimed.
func TestExhaustedRangeReclaimsDeadOwners(t *testing.T) {
	ports := testenv.Ports(t, 4)
	s := newStore(t)
	ctx := context.Background()
	rg := Range{Start: ports.Port(0), End: ports.Port(3)}
	dead := func() probe.Identity {
		c := testenv.Command(t, "sleep", "600")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		id, err := probe.Identify(c.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		c.Process.Kill()
		c.Wait()
		return id
	}
	owners := []probe.Identity{dead(), dead(), probe.Self(), dead()}
	for _, o := range owners {
		if _, err := s.Allocate(ctx, Request{Service: "held", Owner: o, Range: rg}); err != nil {
			t.Fatal(err)
		}
	}
	// Something listens on the last dead owner's port: not free.
	l, err := net.Listen("tcp", ports.Addr(3))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := s.Allocate(ctx, Request{Service: "new", Range: rg})
	if err != nil {
		t.Fatalf("allocate in a range of dead owners: %v", err)
	}
	if a.Port != ports.Port(0) {
		t.Errorf("got port %d, want %d", a.Port, ports.Port(0))
	}
	r, _ := s.Read(ctx)
	if r.Get(ports.Port(1)) != nil || r.Get(ports.Port(2)) == nil || r.Get(ports.Port(3)) == nil {
		t.Errorf("reclaimed the wrong ports: %v", r.Sorted())
	}
	log, _ := os.ReadFile(LogPath(s.LogDir(), time.Now()))
	if n := strings.Count(string(log), `"reason":"owner pid `); n != 2 || !strings.Contains(string(log), "reclaimed: range "+ports.String()+" exhausted") {
		t.Errorf("want 2 reclaim release lines, log:\n%s", log)
	}
}

func TestValidation(t *testing.T) {
	ports := testenv.Ports(t, 11)
	rg := Range{Start: ports.Port(0), End: ports.Port(9)} // and Port(10) outside it
	s := newStore(t)
	bad := []Request{
		{Service: "", Range: rg},
		{Service: "  ", Range: rg},
		{Service: "a\x1b[31m", Range: rg},
		{Service: "a\nb", Range: rg},
		{Service: strings.Repeat("a", MaxServiceName+1), Range: rg},
		{Service: "a", Purpose: "p\x00", Range: rg},
		{Service: "a", Purpose: strings.Repeat("p", MaxPurpose+1), Range: rg},
		{Service: "a", Range: rg, Preferred: ports.Port(10)},
		{Service: "a", Range: rg, HealthPath: "health"},
		{Service: "a", Range: Range{Start: 40000, End: 40010}},
		{Service: "a", Range: rg, PortNames: []string{"8050"}},
	}
	for _, req := range bad {
		_, err := s.Allocate(context.Background(), req)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%+v: want ValidationError, got %v", req, err)
		}
	}
	if _, err := os.Stat(s.Path()); err == nil {
		t.Errorf("a refused request wrote the registry")
	}
}

func TestReleaseRefusesLiveOwner(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	ctx := context.Background()
	self := probe.Self()
	a, err := s.Allocate(ctx, Request{Service: "live", Range: Range(ports), Owner: self})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Release(ctx, ReleaseRequest{Port: a.Port, By: "cli", Reason: "t"})
	var oe *OwnerAliveError
	if !errors.As(err, &oe) || oe.PID != self.PID || !strings.Contains(err.Error(), "live") {
		t.Fatalf("want OwnerAliveError naming pid and service, got %v", err)
	}
	// The owner itself may release.
	if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Callers: []int{self.PID}, By: "cli", Reason: "t"}); err != nil {
		t.Fatal(err)
	}
	// A recorded start time that does not match is a dead owner: releasable.
	stale := self
	stale.Start++
	b, _ := s.Allocate(ctx, Request{Service: "reused", Range: Range(ports), Owner: stale})
	if _, err := s.Release(ctx, ReleaseRequest{Port: b.Port, By: "cli", Reason: "t"}); err != nil {
		t.Fatalf("release of a reused PID's port: %v", err)
	}
	// --force releases a live owner's port.
	c, _ := s.Allocate(ctx, Request{Service: "live", Range: Range(ports), Owner: self})
	if _, err := s.Release(ctx, ReleaseRequest{Port: c.Port, Force: true, By: "cli", Reason: "t"}); err != nil {
		t.Fatal(err)
	}
	// Not allocated.
	_, err = s.Release(ctx, ReleaseRequest{Port: ports.Port(9), By: "cli"})
	var ne *NotAllocatedError
	if !errors.As(err, &ne) {
		t.Fatalf("want NotAllocatedError, got %v", err)
	}
}

func TestAuditLog(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	ctx := context.Background()
	a, err := s.Allocate(ctx, Request{Service: "svc", Purpose: "why", StartedBy: "serve.py", Range: Range(ports)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, Claim{Port: a.Port, ID: a.ID, Owner: probe.Self(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Force: true, By: "cli", ByUser: "tester", Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(LogPath(s.LogDir(), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var actions []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		actions = append(actions, m["action"].(string))
		switch m["action"] {
		case "allocate":
			for _, k := range []string{"timestamp", "port", "service_name", "started_by", "purpose"} {
				if _, ok := m[k]; !ok {
					t.Errorf("allocate line lacks %s: %s", k, sc.Text())
				}
			}
		case "release":
			for _, k := range []string{"timestamp", "port", "service_name", "duration_seconds", "request_count", "error_count", "by", "reason"} {
				if _, ok := m[k]; !ok {
					t.Errorf("release line lacks %s: %s", k, sc.Text())
				}
			}
		}
	}
	if strings.Join(actions, ",") != "allocate,register,release" {
		t.Fatalf("actions = %v", actions)
	}
}

func TestTornLogLineIsNotExtended(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	if err := os.MkdirAll(s.LogDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	path := LogPath(s.LogDir(), time.Now())
	if err := os.WriteFile(path, []byte(`{"timestamp":"2025-`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !json.Valid([]byte(lines[1])) {
		t.Fatalf("new line not whole after a torn one: %q", data)
	}
}

func TestLockTimeoutNamesLockFile(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := Open(t.TempDir(), 200*time.Millisecond)
	if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	holder, err := s.NewLock(s.LockPath())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := holder.TryLock(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_, err = s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)})
	var le *LockError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), s.LockPath()) {
		t.Fatalf("want LockError naming %s, got %v", s.LockPath(), err)
	}
	holder.Close()
	// The abandoned waiter must not keep the lock once it gets it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("lock never came back: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The lock timeout is time without progress: a waiter behind writers that
// keep finishing changes waits past it, as in a burst of hundreds of
// allocations; one behind a holder that finishes nothing gives up.
func TestLockWaitOutlastsTimeoutWhileWritersProgress(t *testing.T) {
	timeout := testenv.Scale(time.Second)
	s := Open(t.TempDir(), timeout)
	writeRegistry(t, s, seedRegistry)
	holder, err := s.NewLock(s.LockPath())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := holder.TryLock(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	got := make(chan error, 1)
	start := time.Now()
	go func() {
		got <- s.Update(context.Background(), func(r *Registry, tx *Tx) error { return ErrNoChange })
	}()
	// The holder stands for a queue of writers: a new registry file every
	// 50 ms, for two and a half times the timeout.
	for i := 0; time.Since(start) < timeout*5/2; i++ {
		writeRegistry(t, s, strings.Replace(seedRegistry, "alpha", fmt.Sprintf("alpha%d", i), 1))
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-got:
		t.Fatalf("the waiter gave up while writers progressed: %v", err)
	default:
	}
	holder.Close()
	if err := <-got; err != nil {
		t.Fatalf("after the holder let go: %v", err)
	}
}

func TestUnwritableRoot(t *testing.T) {
	ports := testenv.Ports(t, 10)
	if os.Geteuid() == 0 {
		// root ignores permission bits; use a path under a regular file.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		s := Open(filepath.Join(f, "root"), time.Second)
		_, err := s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)})
		if err == nil || !strings.Contains(err.Error(), "cannot create registry folder") {
			t.Fatalf("got %v", err)
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	s := Open(filepath.Join(dir, "root"), time.Second)
	if _, err := s.Allocate(context.Background(), Request{Service: "a", Range: Range(ports)}); err == nil {
		t.Fatal("allocate succeeded in an unwritable root")
	}
}

func TestParseRange(t *testing.T) {
	good := map[string]Range{"8000-8100": {8000, 8100}, " 1-65535 ": {1, 65535}, "9000": {9000, 9000}}
	for in, want := range good {
		got, err := ParseRange(in)
		if err != nil || got != want {
			t.Errorf("ParseRange(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "-", "a-b", "8100-8000", "0-10", "1-65536", "8000-", "-8000", "80 00-8100", "8000-8100-8200"} {
		if _, err := ParseRange(in); err == nil {
			t.Errorf("ParseRange(%q) accepted", in)
		}
	}
}

// A clock that went backwards never gives a negative duration.
func TestReleaseDurationNeverNegative(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	future := `{"allocations": {"` + ports.P(0) + `": {"port": ` + ports.P(0) + `, "service_name": "f", "allocated_at": "2999-01-01T00:00:00Z"}}}`
	writeRegistry(t, s, future)
	if _, err := s.Release(context.Background(), ReleaseRequest{Port: ports.Port(0), By: "t", Reason: "t"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(LogPath(s.LogDir(), time.Now()))
	if !strings.Contains(string(data), `"duration_seconds":0,`) {
		t.Fatalf("log: %s", data)
	}
}

func TestStartedBy(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"python3", "serve.py"}, "serve.py"},
		{[]string{"/usr/bin/python3.12", "-u", "app/serve.py"}, "serve.py"},
		{[]string{"python", "-m", "http.server"}, "http.server"},
		{[]string{"python3", "-mhttp.server"}, "http.server"},
		{[]string{"lua5.4", "x.lua"}, "x.lua"},
		{[]string{"node", "server.js"}, "server.js"},
		{[]string{"bash", "-c", "echo"}, "bash"},
		{[]string{"node18", "server.js"}, "node18"}, // only python, pypy and lua take a version
		{[]string{"pythonista", "x.py"}, "pythonista"},
		{[]string{"./myserver", "--port", "1"}, "myserver"},
		{[]string{"-bash"}, "bash"},             // an interactive login shell
		{[]string{"bash", "/dev/fd/3"}, "bash"}, // bash <(…)
		{[]string{"sh", "/proc/self/fd/0"}, "sh"},
		{[]string{"-"}, "shell"},
		{nil, ""},
	} {
		if got := StartedBy(c.argv); got != c.want {
			t.Errorf("StartedBy(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

// parseFile parses a registry file with Parse, as an Update does.
func parseFile(tb testing.TB, path string) *Registry {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// TestFileShape: the registry file is byte for byte the seed's shape: two
// spaces of indent, the seed's field names in the seed's order, ports in
// numeric order, encoding/json's escapes, unknown fields after the known
// ones, a final newline.
func TestFileShape(t *testing.T) {
	at := Time{time.Date(2025, 11, 15, 14, 30, 0, 0, time.UTC)}
	r := &Registry{LastUpdated: Time{at.Add(5 * time.Minute)}, Unknown: jsontext.Value(`{"x_host":"alpha"}`)}
	r.Put(&Allocation{Port: 10000, ServiceName: "big", StartedBy: "a.py", Purpose: "<&>", AllocatedAt: at,
		HealthStatus: StatusReserved})
	r.Put(&Allocation{Port: 9999, ServiceName: "grace_backend", StartedBy: "serve.py", Purpose: "Main Grace API server",
		PID: 12345, AllocatedAt: at, LastHealthCheck: at, HealthStatus: StatusActive, RequestCount: 1247, ErrorCount: 3,
		Command: []string{"python", "serve.py"}, Unknown: jsontext.Value(`{"x_team": {"owner": "ops"}}`)})
	got, err := MarshalIndented(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "allocations": {
    "9999": {
      "port": 9999,
      "service_name": "grace_backend",
      "started_by": "serve.py",
      "purpose": "Main Grace API server",
      "pid": 12345,
      "allocated_at": "2025-11-15T14:30:00Z",
      "last_health_check": "2025-11-15T14:30:00Z",
      "health_status": "active",
      "request_count": 1247,
      "error_count": 3,
      "command": [
        "python",
        "serve.py"
      ],
      "x_team": {
        "owner": "ops"
      }
    },
    "10000": {
      "port": 10000,
      "service_name": "big",
      "started_by": "a.py",
      "purpose": "\u003c\u0026\u003e",
      "pid": null,
      "allocated_at": "2025-11-15T14:30:00Z",
      "last_health_check": null,
      "health_status": "reserved",
      "request_count": 0,
      "error_count": 0
    }
  },
  "last_updated": "2025-11-15T14:35:00Z",
  "x_host": "alpha"
}
`
	if string(got) != want {
		t.Errorf("registry file:\n%s\nwant:\n%s", got, want)
	}
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := MarshalIndented(back)
	if string(again) != want {
		t.Errorf("not stable across a read and a write:\n%s", again)
	}
}

// A writer killed between renaming the registry into place and appending
// its audit lines leaves a registry whose change the log lacks; its lines
// are in the registry (pending_audit). The next writer appends them, once,
// in order, before its own, and a writer after it appends none again.
func TestPendingAuditLinesAreAppendedOnce(t *testing.T) {
	ports := testenv.Ports(t, 10)
	s := newStore(t)
	ctx := context.Background()
	a, err := s.Allocate(ctx, Request{Service: "first", Range: Range(ports)})
	if err != nil {
		t.Fatal(err)
	}
	logPath := LogPath(s.LogDir(), time.Now())
	full, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The state a kill -9 after the rename leaves: the registry has the
	// allocation, the log does not.
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := parseFile(t, s.Path()); len(r.PendingAudit) != 1 || r.AuditSeq != 1 || r.Get(a.Port) == nil {
		t.Fatalf("registry after the change: seq %d, pending %q", r.AuditSeq, r.PendingAudit)
	}
	// A reader changes nothing.
	if _, err := s.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(logPath); len(b) != 0 {
		t.Fatalf("a reader wrote the log: %s", b)
	}
	// The next writer, even one that changes nothing, repairs the log.
	if err := s.Update(ctx, func(*Registry, *Tx) error { return ErrNoChange }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(logPath); string(b) != string(full) {
		t.Fatalf("log after repair:\n%s\nwant:\n%s", b, full)
	}
	if _, err := s.Allocate(ctx, Request{Service: "second", Range: Range(ports)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Force: true, By: "test", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (allocate, allocate, release), got:\n%s", b)
	}
	for i, l := range lines {
		var ev struct {
			Seq    uint64 `json:"seq"`
			Action string `json:"action"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Seq != uint64(i+1) {
			t.Errorf("line %d: seq %d (%v): %s", i+1, ev.Seq, err, l)
		}
	}
}

// Under a state root nothing is followed through a link, whatever the root:
// a linked log, lock, registry file or registry folder is an error naming
// the link, and the link's target is left as it was (or not created).
func TestLinksUnderTheRootAreNotFollowed(t *testing.T) {
	ports := testenv.Ports(t, 10)
	ctx := context.Background()
	target := filepath.Join(t.TempDir(), "target")
	cases := map[string]func(s *Store) string{
		"today's log": func(s *Store) string {
			os.MkdirAll(s.LogDir(), 0o755)
			return LogPath(s.LogDir(), time.Now())
		},
		"lock file":       func(s *Store) string { os.MkdirAll(s.Dir(), 0o755); return s.LockPath() },
		"registry file":   func(s *Store) string { os.MkdirAll(s.Dir(), 0o755); return s.Path() },
		"registry folder": func(s *Store) string { os.MkdirAll(filepath.Dir(s.Dir()), 0o755); return s.Dir() },
		"logs folder":     func(s *Store) string { os.MkdirAll(filepath.Join(s.Root, "logs"), 0o755); return s.LogDir() },
	}
	for name, link := range cases {
		t.Run(name, func(t *testing.T) {
			os.RemoveAll(target)
			if strings.Contains(name, "folder") {
				os.Mkdir(target, 0o755)
			} else if name != "lock file" {
				os.WriteFile(target, []byte("untouched"), 0o600)
			}
			s := newStore(t)
			path := link(s)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			_, err := s.Allocate(ctx, Request{Service: "x", Range: Range(ports)})
			var le *LinkError
			if !errors.As(err, &le) || le.Path != path {
				t.Fatalf("want a LinkError naming %s, got %v", path, err)
			}
			info, err := os.Lstat(target)
			switch {
			case name == "lock file":
				if err == nil {
					t.Errorf("the lock's target was created")
				}
			case strings.Contains(name, "folder"):
				if entries, _ := os.ReadDir(target); len(entries) != 0 {
					t.Errorf("files were made through the linked folder: %v", entries)
				}
			default:
				if b, _ := os.ReadFile(target); string(b) != "untouched" || info.Mode().Perm() != 0o600 {
					t.Errorf("the target was changed: %q %v", b, info.Mode())
				}
			}
		})
	}
}

// Stable ports: A gets the first port, B the second; both stop; B starts first
// and still gets its own, A its own. A new service keeps off remembered ports while
// others are free, and takes one only when nothing else is. --preferred
// wins; Forget drops the memory.
func TestStablePorts(t *testing.T) {
	ports := testenv.Ports(t, 4)
	s := newStore(t)
	ctx := context.Background()
	rg := Range{Start: ports.Port(0), End: ports.Port(3)}
	alloc := func(service string, preferred int) int {
		t.Helper()
		a, err := s.Allocate(ctx, Request{Service: service, Range: rg, Preferred: preferred})
		if err != nil {
			t.Fatal(err)
		}
		return a.Port
	}
	release := func(service string) {
		t.Helper()
		if _, err := s.Release(ctx, ReleaseRequest{Service: service, Force: true, By: "test", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := alloc("A", 0), alloc("B", 0); a != ports.Port(0) || b != ports.Port(1) {
		t.Fatalf("A %d, B %d", a, b)
	}
	release("A")
	release("B")
	if b := alloc("B", 0); b != ports.Port(1) {
		t.Errorf("B came back on %d, want its %d", b, ports.Port(1))
	}
	if a := alloc("A", 0); a != ports.Port(0) {
		t.Errorf("A came back on %d, want its %d", a, ports.Port(0))
	}
	release("A")
	if c := alloc("C", 0); c != ports.Port(2) {
		t.Errorf("new service C got %d, want %d (%d is remembered for A)", c, ports.Port(2), ports.Port(0))
	}
	if d := alloc("D", 0); d != ports.Port(3) {
		t.Errorf("D got %d, want %d", d, ports.Port(3))
	}
	// Only A's remembered port is left free: a new service takes it.
	if e := alloc("E", 0); e != ports.Port(0) {
		t.Errorf("E got %d, want %d once nothing else is free", e, ports.Port(0))
	}
	release("E")
	release("C")
	// --preferred wins over the memory.
	if a := alloc("A", ports.Port(2)); a != ports.Port(2) {
		t.Errorf("A with --preferred %d got %d", ports.Port(2), a)
	}
	release("A")
	if n, err := s.Forget(ctx, "A"); err != nil || n != 1 {
		t.Fatalf("Forget: %d %v", n, err)
	}
	r, _ := s.Read(ctx)
	if _, ok := r.LastPorts["A"]; ok {
		t.Errorf("A still remembered: %v", r.LastPorts)
	}
}

// Environment names are made character by character (runes, not bytes):
// letters upper-cased without their accents, digits kept, the rest _.
func TestEnvName(t *testing.T) {
	for _, c := range []struct{ service, portName, want string }{
		{"grace_backend", "", "GRACE_BACKEND_PORT"},
		{"api", "admin", "API_ADMIN_PORT"},
		{"grace-backend.v2", "", "GRACE_BACKEND_V2_PORT"},
		{"ünï☃", "", "UNI__PORT"},
		{"Café", "", "CAFE_PORT"},
		{"Ærø", "", "_R__PORT"},
		{"日本", "", "___PORT"},
		{"2fa", "", "_2FA_PORT"},
		{"a\u00a0b", "", "A_B_PORT"},
	} {
		if got := EnvName(c.service, c.portName); got != c.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", c.service, c.portName, got, c.want)
		}
	}
}

// UpdateFrom hands fn the registry the caller read only while the file
// holds the very bytes it was read from; any change in between, or a
// change the caller's fn made and did not write, means a fresh parse.
func TestUpdateFromReusesOnlyTheSameBytes(t *testing.T) {
	s := newStore(t)
	writeRegistry(t, s, seedRegistry)
	ctx := context.Background()
	read := func() *Registry {
		r, err := s.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	got := func(prev *Registry) *Registry {
		var seen *Registry
		if err := s.UpdateFrom(ctx, prev, func(r *Registry, tx *Tx) error { seen = r; return ErrNoChange }); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	if prev := read(); got(prev) != prev {
		t.Error("an unchanged file was parsed again")
	}
	prev := read()
	writeRegistry(t, s, strings.Replace(seedRegistry, "grace_backend", "grace_other__", 1)) // same size
	if r := got(prev); r == prev || r.Get(8000).ServiceName != "grace_other__" {
		t.Error("a registry read before a change was handed on")
	}
	prev = read()
	if err := s.UpdateFrom(ctx, prev, func(r *Registry, tx *Tx) error {
		r.Get(8000).ServiceName = "changed"
		return errors.New("no")
	}); err == nil {
		t.Fatal("fn's error was lost")
	}
	if r := got(prev); r == prev || r.Get(8000).ServiceName != "grace_other__" {
		t.Error("a registry fn changed without writing was handed on")
	}
}

func TestReadsAs(t *testing.T) {
	want := []byte(strings.Repeat("0123456789", 10000)) // past one 64 KiB chunk
	for _, tc := range []struct {
		name string
		in   []byte
		same bool
	}{
		{"same", want, true},
		{"last byte differs", append(append([]byte{}, want[:len(want)-1]...), 'x'), false},
		{"shorter", want[:len(want)-1], false},
		{"longer", append(append([]byte{}, want...), '\n'), false},
		{"empty", nil, false},
	} {
		if got, err := readsAs(bytes.NewReader(tc.in), want); err != nil || got != tc.same {
			t.Errorf("%s: %v, %v", tc.name, got, err)
		}
	}
}
