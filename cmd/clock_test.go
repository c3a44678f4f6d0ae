//go:build linux

package cmd_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
	"golang.org/x/sys/unix"
)

// setWallClock moves the host's wall clock by d.
func setWallClock(t *testing.T, to time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(to.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		t.Fatalf("cannot set the clock: %v", err)
	}
}

// The wall clock jumps back and forward while `watch` runs: cycles keep
// their interval (monotonic clock), the watchdog stays "running", and a
// release computed across the jump has no negative duration. It moves the
// host's clock, so it runs only in `make chaos` (GRACECTL_CHAOS_CLOCK=1, as
// root), and puts the clock back from the monotonic clock afterwards.
func TestClockJumps(t *testing.T) {
	b := testPorts(t)
	if os.Getenv("GRACECTL_CHAOS_CLOCK") != "1" || os.Geteuid() != 0 {
		t.Skip("moves the host clock: set GRACECTL_CHAOS_CLOCK=1 and run as root (make chaos)")
	}
	start := time.Now() // carries a monotonic reading
	defer func() { setWallClock(t, start.Add(time.Since(start))) }()

	root := t.TempDir()
	rg := b.String()
	sl := testenv.Command(t, "sleep", "600")
	if err := sl.Start(); err != nil {
		t.Fatal(err)
	}
	defer sl.Process.Kill()
	if out, err := gracectlCmd(t, root, "allocate", "--service", "clocked", "--range", rg, "--pid", strconv.Itoa(sl.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	w := startGracectl(t, root, "watch", "--interval", "300ms", "--range", rg)
	checks := func() int64 {
		st, err := watchdog.LoadState(registry.Open(root, 10*time.Second))
		if err != nil {
			return 0
		}
		return st.ChecksPerformed
	}
	waitFor(t, "two cycles", 60*time.Second, func() bool { return checks() >= 2 })

	for _, jump := range []time.Duration{-time.Hour, 2 * time.Hour} {
		setWallClock(t, time.Now().Add(jump))
		n := checks()
		// Three more cycles at 300 ms take about a second of monotonic time,
		// whatever the wall clock says.
		waitFor(t, "cycles after a jump of "+jump.String(), 60*time.Second, func() bool { return checks() >= n+3 })
		out, err := gracectlCmd(t, root, "status", "--range", rg).Output()
		if err != nil || !strings.Contains(string(out), "Running: True") {
			t.Fatalf("after a jump of %s: %v\n%s", jump, err, out)
		}
	}
	// Back an hour again: the allocation is now "in the future".
	setWallClock(t, time.Now().Add(-2*time.Hour))
	sl.Process.Kill()
	sl.Wait()
	waitFor(t, "the watchdog to release the dead service", 60*time.Second, func() bool {
		return readRegistry(t, root).Get(b.Port(0)) == nil
	})
	var sawRelease bool
	for _, ev := range auditLog(t, root) {
		if ev.Action == "release" {
			sawRelease = true
			if ev.DurationSeconds < 0 {
				t.Fatalf("negative duration: %s", ev.Line)
			}
		}
	}
	if !sawRelease {
		t.Fatal("no release line")
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	w.wait(t, 60*time.Second)
}
