package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// Files under the state root that are not regular files, and a wait for
// the lock cut short.

// runBounded runs c and fails the test if it does not end within timeout
// (it is killed then): what must never hang.
func runBounded(t *testing.T, c *exec.Cmd, timeout time.Duration) (string, int) {
	t.Helper()
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		c.Process.Kill()
		<-done
		t.Fatalf("%v did not end within %s:\n%s", c.Args, timeout, out.String())
	}
	return out.String(), c.ProcessState.ExitCode()
}

// A FIFO in place of the registry, its lock, the watchdog state or today's
// log (issue 22, item 11: it hung every command, holding the lock, past
// --lock-timeout and SIGTERM): each command says so in one line and exits
// 1 at once.
func TestFIFOInTheStateFolder(t *testing.T) {
	cases := map[string]func(s *registry.Store) string{
		"registry":       func(s *registry.Store) string { return s.Path() },
		"lock":           func(s *registry.Store) string { return s.LockPath() },
		"watchdog state": func(s *registry.Store) string { return watchdog.StatePath(s) },
		"today's log":    func(s *registry.Store) string { return registry.LogPath(s.LogDir(), time.Now()) },
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			s := registry.Open(root, time.Second)
			if out, err := gracectlCmd(t, root, "allocate", "--service", "before").CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			p := path(s)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			// Readers read the registry and the watchdog state; writers
			// also lock and log.
			cmds := [][]string{{"allocate", "--service", "x"}}
			switch name {
			case "registry":
				cmds = append(cmds, []string{"status"})
			case "watchdog state":
				cmds = [][]string{{"status"}}
			}
			for _, args := range cmds {
				out, code := runBounded(t, gracectlCmd(t, root, args...), 30*time.Second)
				if code != 1 || !strings.Contains(out, filepath.Base(p)+" is a FIFO (named pipe), not a regular file") ||
					strings.Count(strings.TrimSpace(out), "\n") > 0 {
					t.Errorf("%v with a FIFO for the %s: exit %d, want 1 and one line naming it:\n%s", args, name, code, out)
				}
			}
		})
	}
}

// A writer waiting for the lock honours SIGTERM at once (and says so in
// one line, no Go error text), and --lock-timeout.
func TestLockWaitHonoursSignalsAndTimeout(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("needs flock(1)")
	}
	root := t.TempDir()
	s := registry.Open(root, time.Second)
	if err := s.EnsureDir(); err != nil {
		t.Fatal(err)
	}
	hold := exec.Command("flock", "-x", s.LockPath(), "sleep", "600")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Process.Kill(); hold.Wait() })
	waitFor(t, "the lock to be held", 10*time.Second, func() bool {
		return exec.Command("flock", "-n", "-s", s.LockPath(), "true").Run() != nil
	})
	w := startGracectl(t, root, "allocate", "--service", "waiting", "--lock-timeout", "10m")
	// The kernel lists a waiter in /proc/locks with "->".
	waitFor(t, "allocate to wait for the lock", 30*time.Second, func() bool {
		b, _ := os.ReadFile("/proc/locks")
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[1] == "->" && f[5] == strconv.Itoa(w.cmd.Process.Pid) {
				return true
			}
		}
		return false
	})
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 30*time.Second); code != 1 || !strings.Contains(w.out.String(), "stopped by a signal while waiting for the registry lock") ||
		strings.Contains(w.out.String(), "context canceled") {
		t.Errorf("allocate after SIGTERM: exit %d:\n%s", code, w.out.String())
	}
	out, code := runBounded(t, gracectlCmd(t, root, "allocate", "--service", "w", "--lock-timeout", "300ms"), 30*time.Second)
	if code != 3 || !strings.Contains(out, "has held it for 300ms without finishing a change") {
		t.Errorf("allocate with --lock-timeout 300ms: exit %d:\n%s", code, out)
	}
}
