//go:build linux

package cmd_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// Whether a watchdog runs is the kernel's to say (issue 22, item 7): a
// member of a shared registry's group can write watchdog.json, and a PID
// there must neither be signalled by root's `watch --stop` nor make
// `status` and `run` believe a watchdog runs.

// blockedVictim starts, as root, a process that blocks SIGTERM, so a
// SIGTERM sent to it stays pending, where /proc shows it.
func blockedVictim(t *testing.T) probe.Identity {
	t.Helper()
	c := exec.Command("python3", "-c", "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\nprint('ready', flush=True)\ntime.sleep(600)")
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	id, err := probe.Identify(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sigtermPending reports whether a SIGTERM was sent to pid and not yet
// delivered (it blocks it): kill(2) marks it pending before it returns.
func sigtermPending(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("the victim is gone: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k != "SigPnd" && k != "ShdPnd" {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0 {
			return true
		}
	}
	return false
}

// forgeState writes watchdog.json as user nobody, a member of the shared
// registry's group, naming id as a watchdog whose last cycle is in 2099.
func forgeState(t *testing.T, s *registry.Store, id probe.Identity) {
	t.Helper()
	forged := fmt.Sprintf(`{"running": true, "pid": %d, "pid_start": %d, "boot_id": %q, "started_at": "2025-01-01T00:00:00Z",
"check_interval_seconds": 30, "checks_performed": 7, "issues_detected": 0, "stale_cleaned": 0, "monitored_ports": 0,
"last_cycle_at": "2099-01-01T00:00:00Z", "last_cycle_duration_ms": 1}`, id.PID, id.Start, id.Boot)
	w := asNobody("sh", "-c", "cat > "+watchdog.StatePath(s)+".new && mv -f "+watchdog.StatePath(s)+".new "+watchdog.StatePath(s))
	w.Stdin = strings.NewReader(forged)
	if out, err := w.CombinedOutput(); err != nil {
		t.Fatalf("writing watchdog.json as a group member: %v: %s", err, out)
	}
}

// sharedRegistry is a host registry set up by root's `init --group
// nogroup`, whose member is nobody.
func sharedRegistry(t *testing.T) (string, *registry.Store) {
	t.Helper()
	needRoot(t)
	host := openDir(t, 0o755) + "/host"
	if out, err := gracectlCmd(t, host, "init", "--group", "nogroup").CombinedOutput(); err != nil {
		t.Fatalf("init: %v: %s", err, out)
	}
	return host, registry.Open(host, time.Second)
}

func TestForgedWatchdogStateIsNotBelieved(t *testing.T) {
	host, s := sharedRegistry(t)
	victim := blockedVictim(t)
	forgeState(t, s, victim)

	out, err := gracectlCmd(t, host, "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Running: False") {
		t.Errorf("status with a forged state: %v\n%s", err, out)
	}
	out, err = gracectlCmd(t, host, "watch", "--stop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no watchdog is running") {
		t.Errorf("watch --stop with a forged state: %v\n%s", err, out)
	}
	if sigtermPending(t, victim.PID) {
		t.Fatalf("watch --stop sent SIGTERM to root's pid %d, named by a forged watchdog.json", victim.PID)
	}

	// run starts a real watchdog, which --stop then stops.
	r := gracectlCmd(t, host, "run", "-q", "--", "sleep", "600")
	r.Env = append(r.Env, "GRACECTL_WATCHDOG=on")
	var rout syncBuffer
	r.Stdout, r.Stderr = &rout, &rout
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Process.Kill(); r.Wait() })
	var wd probe.Identity
	waitFor(t, "run to start a real watchdog", 30*time.Second, func() bool {
		id, ok, err := watchdog.Running(s)
		wd = id
		return ok && err == nil
	})
	t.Cleanup(func() { syscall.Kill(wd.PID, syscall.SIGKILL) })
	if wd.PID == victim.PID {
		t.Fatal("the victim was taken for the watchdog")
	}
	out, err = gracectlCmd(t, host, "watch", "--stop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("stopped the watchdog (pid %d)", wd.PID)) || probe.Alive(wd) {
		t.Errorf("watch --stop of the real watchdog: %v\n%s", err, out)
	}
	if sigtermPending(t, victim.PID) {
		t.Fatal("the victim got SIGTERM")
	}
}

// A member holds the watchdog lock itself: with a process of its own, and
// with one that then execs a setuid-root program (the lock's holder is
// then root's). Neither is taken for a watchdog or signalled; a real
// `watch` is refused naming the holder, and says what to do.
func TestWatchdogLockHeldByAnotherProgram(t *testing.T) {
	host, s := sharedRegistry(t)
	const setuid = "/usr/bin/chfn"
	lock := watchdog.LockPath(s)
	if _, err := s.NewLock(lock); err != nil {
		t.Fatal(err)
	}
	hold := map[string][]string{
		"a member's own process": {"flock", "-x", lock, "sleep", "600"},
		"a setuid-root program":  {"/usr/bin/python3", "-c", "import fcntl, os, sys\nf = open(sys.argv[1])\nfcntl.flock(f, fcntl.LOCK_EX)\nos.set_inheritable(f.fileno(), True)\nos.execv(sys.argv[2], [sys.argv[2]])", lock, setuid},
	}
	for name, argv := range hold {
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(argv[0]); strings.HasPrefix(argv[0], "/") && err != nil {
				t.Skipf("needs %s", argv[0])
			}
			if _, err := os.Stat(setuid); err != nil && name == "a setuid-root program" {
				t.Skipf("needs %s", setuid)
			}
			h := asNobody(argv...)
			h.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // flock's child holds the lock too
			stdin, err := h.StdinPipe()                         // chfn waits here for a password
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stdin.Close(); syscall.Kill(-h.Process.Pid, syscall.SIGKILL); h.Wait() })
			var holder int
			waitFor(t, "the lock to be held", 30*time.Second, func() bool {
				pids, _ := watchdog.LockHolders(s)
				if len(pids) == 1 {
					holder = pids[0]
				}
				return holder != 0 && (name != "a setuid-root program" || probe.ExecutableIs(holder, "chfn"))
			})
			id, err := probe.Identify(holder)
			if err != nil {
				t.Fatal(err)
			}
			forgeState(t, s, id)
			out, err := gracectlCmd(t, host, "status").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Running: False") {
				t.Errorf("status: %v\n%s", err, out)
			}
			out, err = gracectlCmd(t, host, "watch", "--stop").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "no watchdog is running") {
				t.Errorf("watch --stop: %v\n%s", err, out)
			}
			if !probe.Alive(id) {
				t.Fatalf("watch --stop killed the lock's holder, pid %d", holder)
			}
			w := gracectlCmd(t, host, "watch")
			out, _ = w.CombinedOutput()
			if w.ProcessState.ExitCode() != 6 || !strings.Contains(string(out), fmt.Sprintf("pid %d, which is not a gracectl watch, holds the watchdog lock", holder)) ||
				!strings.Contains(string(out), "gracectl: hint: ") {
				t.Errorf("a second watch: exit %d\n%s", w.ProcessState.ExitCode(), out)
			}
		})
	}
}
