package watchdog

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

func TestStatusCounts(t *testing.T) {
	ports := testenv.Ports(t, 10)
	rg := registry.Range(ports)
	s := registry.Open(t.TempDir(), 2*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := s.Allocate(context.Background(), registry.Request{Service: "s" + strconv.Itoa(i), Range: rg}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ReadStatus(context.Background(), s, rg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalPorts != 10 || st.Allocated != 3 || st.Available != 7 || len(st.Allocations) != 3 || st.Allocations[0].Port != rg.Start {
		t.Fatalf("status = %+v", st)
	}
	if st.Watchdog == nil || st.Watchdog.Running {
		t.Fatalf("watchdog = %+v", st.Watchdog)
	}
}

// Wall-clock jumps: a clock set back keeps a live watchdog "running"; a
// clock set forward past two intervals shows it stopped until its next cycle
// records a new time (its own ticks use the monotonic clock). Whether its
// process runs at all is the kernel's to say (TestStateFileIsNotBelieved).
func TestWatchdogFreshnessAcrossClockJumps(t *testing.T) {
	last := time.Now().UTC()
	st := &State{Running: true, IntervalSeconds: 30, LastCycleAt: registry.Time{Time: last}}
	if !st.fresh(last.Add(-time.Hour)) {
		t.Error("a clock set back an hour made a live watchdog look stopped")
	}
	if !st.fresh(last.Add(60 * time.Second)) {
		t.Error("a live watchdog within two intervals looks stopped")
	}
	if st.fresh(last.Add(10 * time.Minute)) {
		t.Error("a watchdog silent for 20 intervals looks running")
	}
}
