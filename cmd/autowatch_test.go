package cmd_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// run starts the watchdog when none runs.

// watchdogsOf lists the `gracectl watch` processes working on root.
func watchdogsOf(root string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if strings.Contains(string(stat), ") Z ") {
			continue // a zombie nobody reaped: gone
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		ofRoot := strings.Contains(string(b), root) || strings.Contains(string(env), "GRACECTL_ROOT="+root+"\x00")
		if len(args) > 1 && args[1] == "watch" && ofRoot {
			out = append(out, pid)
		}
	}
	return out
}

func autoRun(t *testing.T, root string, args ...string) *started {
	t.Helper()
	c := gracectlCmd(t, root, append([]string{"run"}, args...)...)
	c.Env = append(c.Env, "GRACECTL_WATCHDOG=on", "GRACECTL_WATCHDOG_IDLE=1s")
	s := &started{cmd: c, out: &syncBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = s.out, s.out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = c.Wait(); close(s.done) }()
	t.Cleanup(func() { c.Process.Kill(); <-s.done })
	return s
}

// Three runs at once start exactly one watchdog, which says it was started
// by run, releases the port of a run killed with SIGKILL, and exits by
// itself once the registry is empty.
func TestRunStartsOneWatchdog(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	rg := b.String()
	var runs []*started
	for i := 0; i < 3; i++ {
		runs = append(runs, autoRun(t, root, "--range", rg, "--service", "s"+strconv.Itoa(i), "--", "sleep", "600"))
	}
	waitFor(t, "three services registered", 60*time.Second, func() bool {
		n := 0
		for _, a := range readRegistry(t, root).Allocations {
			if a.PID > 0 {
				n++
			}
		}
		return n == 3
	})
	waitFor(t, "the watchdog", 60*time.Second, func() bool { return len(watchdogsOf(root)) >= 1 })
	if w := watchdogsOf(root); len(w) != 1 {
		t.Fatalf("%d watchdogs run for one registry: %v", len(w), w)
	}
	st, err := watchdog.LoadState(registry.Open(root, time.Second))
	if err != nil || !st.Running || st.StartedBy != "run" {
		t.Fatalf("watchdog state: %+v %v", st, err)
	}
	for i, r := range runs {
		waitFor(t, "run "+strconv.Itoa(i)+"'s banner", 60*time.Second, func() bool {
			return strings.Contains(r.out.String(), "Watchdog: Active (monitors health every 30s)")
		})
	}
	if _, err := os.Stat(filepath.Join(root, registry.LogDir, "watchdog.log")); err != nil {
		t.Errorf("no watchdog log: %v", err)
	}
	// A run killed outright: its child gets SIGTERM, and the watchdog
	// releases the port.
	victim := readRegistry(t, root).OfService("s0", "")[0].Port
	runs[0].cmd.Process.Signal(syscall.SIGKILL)
	waitFor(t, "the killed run's port to be released by the watchdog", 60*time.Second, func() bool {
		return readRegistry(t, root).Get(victim) == nil
	})
	// A full cycle after the release (SIGHUP runs one now) closes the
	// crash's episode without a "resolved" line: the port is not
	// allocated any more (issue 23).
	logPath := filepath.Join(root, registry.LogDir, "watchdog.log")
	cycles := func() int { b, _ := os.ReadFile(logPath); return strings.Count(string(b), "Health check:") }
	before := cycles()
	for _, pid := range watchdogsOf(root) {
		syscall.Kill(pid, syscall.SIGHUP)
	}
	waitFor(t, "a cycle after the release", 60*time.Second, func() bool { return cycles() > before })
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "Port "+strconv.Itoa(victim)+": ") && strings.Contains(string(b), "resolved") {
		t.Errorf("an issue of port %d, released, was logged as resolved:\n%s", victim, b)
	}
	// The others end; with the registry empty the watchdog exits after
	// its idle time (1 s here).
	for _, r := range runs[1:] {
		r.cmd.Process.Signal(syscall.SIGTERM)
		r.wait(t, 60*time.Second)
	}
	waitFor(t, "the idle watchdog to exit", 60*time.Second, func() bool { return len(watchdogsOf(root)) == 0 })
	log, _ := os.ReadFile(filepath.Join(root, registry.LogDir, "watchdog.log"))
	if !strings.Contains(string(log), "No allocation for 1s: exiting") {
		t.Errorf("watchdog log:\n%s", log)
	}
}

// --no-watchdog starts none; a watchdog already running is used as it is;
// watch --stop stops it.
func TestRunUsesOrSkipsTheWatchdog(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	rg := b.String()
	r := autoRun(t, root, "--range", rg, "--no-watchdog", "--", "true")
	r.wait(t, 60*time.Second)
	if w := watchdogsOf(root); len(w) != 0 || !strings.Contains(r.out.String(), "Watchdog: Not running") {
		t.Fatalf("--no-watchdog: watchdogs %v\n%s", w, r.out)
	}
	w := startGracectl(t, root, "watch", "--range", rg)
	waitFor(t, "the hand-started watchdog", 60*time.Second, func() bool { return strings.Contains(w.out.String(), "Health check:") })
	r = autoRun(t, root, "--range", rg, "--", "true")
	r.wait(t, 60*time.Second)
	if ws := watchdogsOf(root); len(ws) != 1 || ws[0] != w.cmd.Process.Pid || !strings.Contains(r.out.String(), "Watchdog: Active") {
		t.Fatalf("with a watchdog running: %v (want only %d)\n%s", ws, w.cmd.Process.Pid, r.out)
	}
	out, err := gracectlCmd(t, root, "watch", "--stop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stopped the watchdog (pid "+strconv.Itoa(w.cmd.Process.Pid)+")") {
		t.Fatalf("watch --stop: %v %s", err, out)
	}
	select {
	case <-w.done:
	case <-time.After(testenv.Scale(60 * time.Second)):
		t.Fatal("the watchdog did not exit after watch --stop")
	}
	// Nothing to stop is no failure (issue 23).
	if out, err := gracectlCmd(t, root, "watch", "--stop").CombinedOutput(); err != nil || !strings.Contains(string(out), "no watchdog is running") {
		t.Fatalf("watch --stop with none running: %v %s", err, out)
	}
}
