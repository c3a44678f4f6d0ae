//go:build linux

package cmd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"golang.org/x/sys/unix"
)

// A service started by `run` keeps its port when run is SIGKILLed at the
// worst moment (issue 22, item 9): right after its foreground process has
// exited, while the daemon it started has not bound the port yet. The
// watchdog released the port ("owner pid ... is gone"), allocate
// --preferred handed it to a newcomer, and the daemon bound it 4 s later.
// Now the watchdog finds the daemon (it carries run's token in its
// environment, or run recorded it) and makes it the owner.

// daemonScript double-forks, leaves the session, writes its pid, waits for
// the file "go", then binds the port and sleeps.
const daemonScript = `
import os, socket, sys, time
port, work = int(sys.argv[1]), sys.argv[2]
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
open(os.path.join(work, "daemon.pid"), "w").write(str(os.getpid()))
while not os.path.exists(os.path.join(work, "go")): time.sleep(0.01)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen()
time.sleep(600)
`

func TestRunKilledRightAfterItsCommandExits(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	for _, tc := range []struct {
		name string
		// how the foreground starts the daemon, and whether it waits for
		// run to record it first
		start   string
		waitRec bool
	}{
		// started at the last moment: run never saw it; its environment
		// carries run's token
		{"a daemon started as the command exits", "%s -c \"$DAEMON\" %s %s &", false},
		// its environment cleared (no token): run recorded it while the
		// command ran
		{"a daemon with a cleared environment", "env -i %s -c \"$DAEMON\" %s %s &", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, work := t.TempDir(), t.TempDir()
			port := testPorts(t).Port(0)
			t.Cleanup(func() {
				if b, err := os.ReadFile(filepath.Join(work, "daemon.pid")); err == nil {
					if pid, _ := strconv.Atoi(string(b)); pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			launchDaemon := fmt.Sprintf(tc.start, python, strconv.Itoa(port), work)
			fg := "echo $$ > fg.pid; "
			if tc.waitRec {
				fg += launchDaemon + " while [ ! -e exitnow ]; do sleep 0.01; done; exit 0"
			} else {
				fg += "while [ ! -e exitnow ]; do sleep 0.01; done; " + launchDaemon + " exit 0"
			}
			run := gracectlCmd(t, root, "run", "--quiet", "--service", "daemonized", "--preferred", strconv.Itoa(port), "--", "sh", "-c", fg)
			run.Dir = work
			run.Env = append(run.Env, "DAEMON="+daemonScript)
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { run.Process.Kill(); run.Wait() })
			fgPID := readPID(t, filepath.Join(work, "fg.pid"))
			if tc.waitRec {
				daemon := readPID(t, filepath.Join(work, "daemon.pid"))
				waitFor(t, "run to record the daemon", 30*time.Second, func() bool {
					a := readRegistry(t, root).Get(port)
					return a != nil && a.Descendants != nil && containsDescendant(a.Descendants, daemon)
				})
			}
			// The foreground exits; the moment the kernel says so (pidfd),
			// run is SIGKILLed.
			pidfd, err := unix.PidfdOpen(fgPID, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			if err := os.WriteFile(filepath.Join(work, "exitnow"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				n, err := unix.Poll(fds, 30000)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n != 1 {
					t.Fatalf("waiting for the foreground to exit: %v", err)
				}
				break
			}
			run.Process.Signal(syscall.SIGKILL)
			run.Wait()

			// A watchdog cycle: the port is the daemon's, not released.
			out, _ := gracectlCmd(t, root, "check").CombinedOutput()
			a := readRegistry(t, root).Get(port)
			if a == nil {
				t.Fatalf("the port was released while the daemon lives:\n%s", out)
			}
			// A newcomer asking for it gets another.
			got, err := gracectlCmd(t, root, "allocate", "--service", "newcomer", "--preferred", strconv.Itoa(port)).Output()
			if err != nil || strings.TrimSpace(string(got)) == strconv.Itoa(port) {
				t.Fatalf("a newcomer got the daemon's port: %v %s", err, got)
			}
			// The daemon binds; the watchdog sees it active, its owner.
			daemon := readPID(t, filepath.Join(work, "daemon.pid"))
			if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the daemon to listen", 30*time.Second, func() bool { return probeListening(port) })
			waitFor(t, "the daemon to own the port", 30*time.Second, func() bool {
				gracectlCmd(t, root, "check").Run()
				a := readRegistry(t, root).Get(port)
				return a != nil && int(a.PID) == daemon && a.HealthStatus == registry.StatusActive
			})
			lines := auditLog(t, root)
			var handed bool
			for _, ev := range lines {
				handed = handed || (ev.Action == "register" && strings.Contains(ev.Line, "started by the service, lives on after owner pid"))
			}
			if !handed {
				t.Errorf("no register line for the hand-over in the log")
			}
			checkAuditMatchesRegistry(t, root)
		})
	}
}

func containsDescendant(ds []registry.Descendant, pid int) bool {
	for _, d := range ds {
		if d.PID == pid {
			return true
		}
	}
	return false
}
