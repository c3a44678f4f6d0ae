package watchdog

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The pool's history, seeded from the log by working back from the
// registry, then kept from what the watchdog sees. The ports are numbers
// only: none is bound.
func TestHistorySeedAndRecord(t *testing.T) {
	rg := registry.Range{Start: 28500, End: 28509}
	now := time.Date(2025, 11, 15, 14, 0, 5, 0, time.UTC)
	at := func(ago time.Duration) string { return now.Add(-ago).Format(registry.TimeLayout) }
	logLine := func(ago time.Duration, action string, port int, seq int) string {
		return fmt.Sprintf(`{"timestamp":%q,"action":%q,"port":%d,"service_name":"s","seq":%d}`, at(ago), action, port, seq)
	}
	dir := t.TempDir()
	lines := []string{
		logLine(70*time.Minute, "allocate", 28500, 1), // before the window: counted in the start
		logLine(50*time.Minute, "allocate", 28501, 2),
		logLine(50*time.Minute, "allocate", 28502, 3),
		logLine(20*time.Minute, "release", 28501, 4),
		logLine(20*time.Minute, "allocate", 9000, 5), // outside the range
		logLine(5*time.Minute, "adopt", 28503, 6),
	}
	if err := os.WriteFile(filepath.Join(dir, "allocations_20251115.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := &registry.Registry{}
	for _, p := range []int{28500, 28502, 28503, 9000} {
		reg.Put(&registry.Allocation{Port: p, HealthStatus: registry.StatusActive})
	}
	h := NewHistory()
	if err := h.Seed(dir, rg, reg, now); err != nil {
		t.Fatal(err)
	}
	d := h.Doc(now)
	if len(d.Allocated) != 360 || d.StepSeconds != 10 || !d.Start.Equal(now.Add(-time.Hour+10*time.Second).Truncate(10*time.Second)) {
		t.Fatalf("shape: %d steps of %d s from %s", len(d.Allocated), d.StepSeconds, d.Start)
	}
	value := func(s []*int, ago time.Duration) string {
		i := len(s) - 1 - int(ago/(10*time.Second))
		if s[i] == nil {
			return "null"
		}
		return fmt.Sprint(*s[i])
	}
	for _, tc := range []struct {
		ago  time.Duration
		want string
	}{
		{59 * time.Minute, "1"}, {50 * time.Minute, "3"}, {30 * time.Minute, "3"},
		{20 * time.Minute, "3"}, // the step of the release holds its highest count
		{19 * time.Minute, "2"}, {5 * time.Minute, "3"}, {0, "3"},
	} {
		if got := value(d.Allocated, tc.ago); got != tc.want {
			t.Errorf("allocated %s ago: %s, want %s", tc.ago, got, tc.want)
		}
	}
	if value(d.Unhealthy, 0) != "null" || value(d.Unmanaged, 0) != "null" {
		t.Errorf("health and unmanaged are not in the log, yet known: %s %s", value(d.Unhealthy, 0), value(d.Unmanaged, 0))
	}
	// What the watchdog sees from now on.
	reg.Get(28502).HealthStatus = registry.StatusOrphaned
	h.Allocations(now.Add(10*time.Second), rg, reg)
	h.Unmanaged(now.Add(20*time.Second), 2)
	d = h.Doc(now.Add(30 * time.Second))
	if value(d.Unhealthy, 20*time.Second) != "1" || value(d.Unmanaged, 10*time.Second) != "2" || value(d.Unhealthy, 0) != "1" ||
		value(d.Allocated, 0) != "3" || value(d.Unmanaged, 20*time.Second) != "null" {
		t.Errorf("recorded: unhealthy %s, unmanaged %s, allocated %s", value(d.Unhealthy, 0), value(d.Unmanaged, 0), value(d.Allocated, 0))
	}
	// Two hours later, with nothing new, the last counts still hold.
	d = h.Doc(now.Add(2 * time.Hour))
	if value(d.Allocated, time.Hour-10*time.Second) != "3" || value(d.Unmanaged, 0) != "2" {
		t.Errorf("after two quiet hours: %s %s", value(d.Allocated, 0), value(d.Unmanaged, 0))
	}
}

// The map: one state per port in use, the processes behind each as they
// are now, free ports counted. No port is bound.
func TestBuildMap(t *testing.T) {
	listener := testenv.Command(t, "sleep", "600")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	self := probe.Self()
	goneID := probe.Identity{PID: gone.Process.Pid, Start: 1, Boot: self.Boot}
	rg := registry.Range{Start: 28500, End: 28509}
	alloc := func(port int, status string, owner probe.Identity, listener int) *registry.Allocation {
		a := &registry.Allocation{Port: port, ServiceName: fmt.Sprint("s", port), HealthStatus: status, Command: []string{"owner", "cmd"}, ListenerPID: listener}
		a.SetOwner(owner)
		return a
	}
	st := &Status{Range: rg, Allocations: []*registry.Allocation{
		alloc(28500, registry.StatusReserved, probe.Identity{}, 0),
		alloc(28501, registry.StatusActive, self, 0),
		alloc(28502, registry.StatusOrphaned, goneID, 0),
		alloc(28503, registry.StatusNotListening, self, 0),
		alloc(28504, registry.StatusStarting, self, 0),
		alloc(28505, registry.StatusActive, self, listener.Process.Pid), // served by someone else
		alloc(9000, registry.StatusActive, self, 0),                     // outside the range
	}, Unmanaged: []Unmanaged{{Port: 28509, PID: 77, Command: "legacy", User: "alice"}}}
	m := BuildMap("host-a", st, map[int][]int{28502: {listener.Process.Pid}})
	states := map[int]string{}
	for _, c := range m.Ports {
		states[c.Port] = c.State
	}
	want := map[int]string{28500: "reserved", 28501: "active", 28502: "orphaned", 28503: "unhealthy", 28504: "starting", 28505: "active", 28509: "unmanaged"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	orphan := m.Ports[2]
	if orphan.Owner == nil || orphan.Owner.Alive || orphan.Owner.Command != "owner cmd" ||
		orphan.Listener == nil || !orphan.Listener.Alive || orphan.Listener.Command != "sleep 600" || orphan.Issue == "" {
		t.Fatalf("orphaned cell: %+v owner %+v listener %+v", orphan, orphan.Owner, orphan.Listener)
	}
	if foreign := m.Ports[5]; !foreign.Owner.Alive || foreign.Listener == nil || foreign.Listener.Command != "sleep 600" || foreign.Issue == "" {
		t.Fatalf("foreign-served cell: %+v", foreign)
	}
	if m.Counts["free"] != 3 || m.Counts["active"] != 2 || m.Issues != 4 || m.Host != "host-a" {
		t.Fatalf("counts %v, issues %d", m.Counts, m.Issues)
	}
}
