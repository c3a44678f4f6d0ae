package cmd_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// A service killed with SIGKILL is released by `watch` within one
// interval; status shows Running: True while watch runs, and its counts;
// a second watch is refused; SIGTERM stops it and status says False.
func TestWatchReleasesDeadServiceAndReportsState(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	rg := b.String()
	w := startGracectl(t, root, "watch", "--interval", "300ms", "--range", rg)
	waitFor(t, "the watchdog's first cycle", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Health check:")
	})
	out := w.out.String()
	for _, want := range []string{"[PORT-WATCHDOG] Started (checking every 300ms)", "[PORT-WATCHDOG] Monitoring ports " + b.String()} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	// Off journald, every line starts with a timestamp.
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* \[PORT-WATCHDOG\] Started`).MatchString(out) {
		t.Fatalf("no timestamp on the first line:\n%s", out)
	}

	st, err := gracectlCmd(t, root, "status", "--range", rg).Output()
	if err != nil || !strings.Contains(string(st), "Running: True") || !strings.Contains(string(st), "Check Interval: 300ms") {
		t.Fatalf("status while watching (%v):\n%s", err, st)
	}

	// A second watchdog is refused at once (6), naming the first and
	// pointing at watch --stop.
	sc := gracectlCmd(t, root, "watch", "--range", rg)
	second, _ := sc.CombinedOutput()
	if sc.ProcessState.ExitCode() != 6 || !strings.Contains(string(second), fmt.Sprintf("another gracectl watch (pid %d) is already watching", w.cmd.Process.Pid)) ||
		!strings.Contains(string(second), "gracectl: hint: use it as it is (status shows it), or stop it first with 'gracectl watch --stop'") {
		t.Fatalf("second watch: exit %d\n%s", sc.ProcessState.ExitCode(), second)
	}

	// A service with a health endpoint: counts come through to status.
	svc := startGracectl(t, root, "run", "--range", rg, "--health-path", "/health", "--", "python3", serveScript(t))
	waitFor(t, "the service to be active", 60*time.Second, func() bool {
		a := readRegistry(t, root).Get(b.Port(0))
		return a != nil && a.HealthStatus == registry.StatusActive && !a.LastHealthCheck.IsZero()
	})
	if !strings.Contains(svc.out.String(), "   Watchdog: Active (monitors health every 300ms)") {
		t.Fatalf("run's banner does not see the running watchdog:\n%s", svc.out)
	}
	httpGet(t, "http://"+b.Addr(0)+"/")
	httpGet(t, "http://"+b.Addr(0)+"/error")
	waitFor(t, "counts from /health", 60*time.Second, func() bool {
		a := readRegistry(t, root).Get(b.Port(0))
		return a != nil && a.RequestCount == 2 && a.ErrorCount == 1
	})
	st, _ = gracectlCmd(t, root, "status", "--range", rg).Output()
	if !strings.Contains(string(st), "  Requests: 2\n  Errors: 1\n") {
		t.Fatalf("status lacks the counts:\n%s", st)
	}

	// Kill the service (and gracectl run, so only the watchdog can clean up).
	a := readRegistry(t, root).Get(b.Port(0))
	svc.cmd.Process.Kill()
	syscall.Kill(int(a.PID), syscall.SIGKILL)
	waitFor(t, "the watchdog to release the dead service's port", 60*time.Second, func() bool {
		return readRegistry(t, root).Get(b.Port(0)) == nil
	})
	waitFor(t, "the cleanup log lines", 60*time.Second, func() bool {
		o := w.out.String()
		return strings.Contains(o, "[PORT-WATCHDOG] Port "+b.P(0)+" (serve): dead") &&
			strings.Contains(o, "[PORT-WATCHDOG] Cleaning up stale port "+b.P(0)) &&
			strings.Contains(o, "[PORT-MANAGER] Released port "+b.P(0))
	})

	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("watch exited %d:\n%s", code, w.out)
	}
	st, _ = gracectlCmd(t, root, "status", "--range", rg).Output()
	if !strings.Contains(string(st), "Running: False") || !strings.Contains(string(st), "Stale Cleaned: 1") {
		t.Fatalf("status after watch stopped:\n%s", st)
	}
}

// sd_notify: READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 arrive on
// NOTIFY_SOCKET; SIGHUP runs a cycle at once.
func TestWatchSdNotify(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	sock := filepath.Join(root, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	c := gracectlCmd(t, root, "watch", "--interval", "1h", "--range", b.String())
	c.Env = append(c.Env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	w := startCmd(t, c)
	got := map[string]int{}
	expect := func(prefix string, n int) {
		t.Helper()
		deadline := time.After(testenv.Scale(60 * time.Second))
		for got[prefix] < n {
			select {
			case m := <-msgs:
				for _, line := range strings.Split(m, "\n") {
					for _, p := range []string{"READY=1", "STATUS=", "WATCHDOG=1", "STOPPING=1"} {
						if strings.HasPrefix(line, p) {
							got[p]++
						}
					}
				}
			case <-deadline:
				t.Fatalf("no %s within %s; got %v; output:\n%s", prefix, testenv.Scale(60*time.Second), got, w.out)
			}
		}
	}
	expect("READY=1", 1)
	expect("STATUS=", 1)
	// With a 1 h interval, WATCHDOG=1 keeps coming only from the
	// WatchdogSec ticker in the loop.
	expect("WATCHDOG=1", 3)
	statuses := got["STATUS="]
	c.Process.Signal(syscall.SIGHUP)
	expect("STATUS=", statuses+1)
	c.Process.Signal(syscall.SIGTERM)
	expect("STOPPING=1", 1)
	w.wait(t, 60*time.Second)
	// Timestamps under journald: TestJournalStreamIsCheckedAgainstStderr.
}

// check: a table with the issue's columns, exit 1 on issues, 0 when fine.
func TestCheckExitStatus(t *testing.T) {
	root := t.TempDir()
	out, err := gracectlCmd(t, root, "check").CombinedOutput()
	if err != nil {
		t.Fatalf("check on an empty registry: %v\n%s", err, out)
	}
	sl := testenv.Command(t, "sleep", "600")
	sl.Start()
	pid := sl.Process.Pid
	// The default range: the test's own (gracectlCmd), never 8000-8100.
	if out, err := gracectlCmd(t, root, "allocate", "--service", "gone", "--pid", itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sl.Process.Kill()
	sl.Wait()
	out, err = gracectlCmd(t, root, "check", "--dry-run").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check with a dead service: %v\n%s", err, out)
	}
	for _, col := range []string{"Port", "Service", "PID", "Process", "Listening", "Health", "Status", "Last check", "Requests", "Errors", "dead", "would release"} {
		if !strings.Contains(string(out), col) {
			t.Fatalf("check output lacks %q:\n%s", col, out)
		}
	}
	if readRegistry(t, root).Get(testPorts(t).Port(0)) == nil {
		t.Fatal("--dry-run released the port")
	}
	out, _ = gracectlCmd(t, root, "check", "--json").Output()
	if !strings.Contains(string(out), `"action": "released"`) {
		t.Fatalf("check --json:\n%s", out)
	}
	if readRegistry(t, root).Get(testPorts(t).Port(0)) != nil {
		t.Fatal("check did not release the dead service's port")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// A registered owner killed with SIGKILL loses its port moments later, not
// at the next cycle (an hour away here, so that however slow the machine,
// only the first cycle runs): watch holds a pidfd for every owner. So does one that dies before watch has picked its
// allocation up. (How fast: docs/benchmarks, `bench.py`; this test proves it
// happens without a cycle.)
func TestWatchSeesDeathsBetweenCycles(t *testing.T) {
	b := testPorts(t)
	if runtime.GOOS != "linux" {
		t.Skip("owner exits are watched with pidfds, on Linux only")
	}
	root := t.TempDir()
	rg := b.String()
	sleeper := func() *exec.Cmd {
		c := testenv.Command(t, "sleep", "600")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	allocate := func(service string, pid int) int {
		out, err := gracectlCmd(t, root, "allocate", "--service", service, "--range", rg, "--pid", strconv.Itoa(pid)).Output()
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		return port
	}
	released := func(w *started, port int, service string) {
		t.Helper()
		waitFor(t, "port "+strconv.Itoa(port)+" to be released (the next cycle is an hour away)", 60*time.Second, func() bool {
			return readRegistry(t, root).Get(port) == nil
		})
		waitFor(t, "the release lines", 60*time.Second, func() bool {
			o := w.out.String()
			return strings.Contains(o, "[PORT-WATCHDOG] Port "+strconv.Itoa(port)+" ("+service+"): dead") &&
				strings.Contains(o, "[PORT-MANAGER] Released port "+strconv.Itoa(port))
		})
	}
	// An owner watched from the start: its pidfd tells.
	first := sleeper()
	p1 := allocate("watched", first.Process.Pid)
	w := startGracectl(t, root, "watch", "--interval", "1h", "--range", rg)
	waitFor(t, "the watchdog to watch owner exits", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Watching owner exits (pidfd): 1 owners now")
	})
	first.Process.Signal(syscall.SIGKILL)
	released(w, p1, "watched")
	// An owner that dies before its allocation is picked up.
	second := sleeper()
	p2 := allocate("late", second.Process.Pid)
	second.Process.Signal(syscall.SIGKILL)
	released(w, p2, "late")
	if n := strings.Count(w.out.String(), "Health check:"); n != 1 {
		t.Errorf("%d cycles ran; the releases must not have waited for one", n)
	}
}

// A lasting issue is one episode: logged and counted once when it starts,
// logged again when it ends, not every cycle.
func TestWatchCountsIssueEpisodes(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	rg := b.String()
	owner := testenv.Command(t, "sleep", "600")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { owner.Process.Kill(); owner.Wait() }()
	if err := gracectlCmd(t, root, "allocate", "--service", "quiet", "--range", rg, "--pid", strconv.Itoa(owner.Process.Pid)).Run(); err != nil {
		t.Fatal(err)
	}
	w := startGracectl(t, root, "watch", "--interval", "150ms", "--startup-grace", "1ms", "--range", rg)
	state := func() (checks, issues int64) {
		out, _ := gracectlCmd(t, root, "status", "--json", "--range", rg).Output()
		var st struct {
			Watchdog struct {
				Checks int64 `json:"checks_performed"`
				Issues int64 `json:"issues_detected"`
			} `json:"watchdog"`
		}
		_ = json.Unmarshal(out, &st)
		return st.Watchdog.Checks, st.Watchdog.Issues
	}
	waitFor(t, "five cycles", 60*time.Second, func() bool { c, _ := state(); return c >= 5 })
	if _, issues := state(); issues != 1 {
		t.Errorf("issues detected %d over five cycles of one lasting issue, want 1", issues)
	}
	line := "Port " + b.P(0) + " (quiet): not_listening (non-responsive port: owner alive but not listening)"
	if n := strings.Count(w.out.String(), line); n != 1 {
		t.Errorf("issue line logged %d times, want once:\n%s", n, w.out)
	}
	// It ends: the port listens.
	l, err := net.Listen("tcp", b.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitFor(t, "the end of the issue to be logged", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Port "+b.P(0)+": non-responsive port resolved")
	})
}

// Timestamps are left to journald only when stderr is the stream
// JOURNAL_STREAM names (device:inode), not whenever the variable is set.
func TestJournalStreamIsCheckedAgainstStderr(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	for _, tc := range []struct {
		name  string
		match bool
	}{{"stderr is the journal stream", true}, {"another stream", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			stream := fmt.Sprintf("%d:%d", uint64(st.Dev), st.Ino)
			if !tc.match {
				stream = fmt.Sprintf("%d:%d", uint64(st.Dev), st.Ino+1)
			}
			c := gracectlCmd(t, root, "watch", "--interval", "1s", "--range", b.String())
			c.Env = append(c.Env, "JOURNAL_STREAM="+stream)
			c.Stderr = f
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { c.Process.Signal(syscall.SIGTERM); c.Wait() }()
			var out []byte
			waitFor(t, "the first cycle", 60*time.Second, func() bool {
				out, _ = os.ReadFile(f.Name())
				return strings.Contains(string(out), "Health check:")
			})
			stamped := regexp.MustCompile(`^\d{4}-\d\d-\d\dT`).Match(out)
			if stamped == tc.match {
				t.Errorf("timestamps %v with JOURNAL_STREAM %s:\n%s", stamped, stream, out)
			}
		})
	}
}
