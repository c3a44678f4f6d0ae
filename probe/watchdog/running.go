package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// Whether a registry's watchdog runs, and which process it is, is asked of
// the kernel, never of the state file: any member of a shared registry's
// group can write watchdog.json, and a PID written there must not make
// root's `watch --stop` signal a process of the member's choosing, nor make
// `status` and `run` believe a watchdog runs. The watchdog is the process
// that holds its lock (LockPath) exclusively, as /proc/locks lists it, whose
// executable is gracectl and whose command line is `watch`. `status`, `run`
// and `watch --stop` all ask Running.

// program is the name of gracectl's executable.
const program = "gracectl"

// ErrNoLockTable: off Linux the kernel does not say who holds a lock.
var ErrNoLockTable = probe.ErrNoLockTable

// LockHolders are the processes holding store's watchdog lock exclusively,
// whatever they are (a watchdog, or one starting). Off Linux, where the
// kernel does not name them, it returns ErrNoLockTable.
func LockHolders(store *registry.Store) ([]int, error) {
	info, err := os.Lstat(LockPath(store))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &registry.NotRegularError{Path: LockPath(store), Mode: info.Mode()}
	}
	return probe.FlockHolders(info)
}

// Running finds the process running store's watchdog: one that holds the
// watchdog lock, executes gracectl and runs `watch`. ok is false when there
// is none. Off Linux (no /proc/locks) the state file's PID is taken when
// that process is alive and named gracectl and the lock is held.
func Running(store *registry.Store) (id probe.Identity, ok bool, err error) {
	pids, err := LockHolders(store)
	if errors.Is(err, ErrNoLockTable) {
		return runningFromState(store)
	}
	if err != nil {
		return id, false, err
	}
	for _, pid := range pids {
		if !probe.ExecutableIs(pid, program) || !isWatchCommand(probe.Cmdline(pid)) {
			continue
		}
		if id, err := probe.IdentifyLocal(pid); err == nil {
			return id, true, nil
		}
	}
	return id, false, nil
}

// isWatchCommand reports whether argv is `gracectl [flags] watch ...`.
func isWatchCommand(argv []string) bool {
	for i, a := range argv {
		if i == 0 {
			continue
		}
		if a == "--" {
			return false
		}
		if a == "watch" {
			return true
		}
	}
	return false
}

// runningFromState is Running where the kernel does not name a lock's
// holder (macOS): the lock must be held, and the state file's process
// alive and named gracectl. It is never used to signal (see Stop).
func runningFromState(store *registry.Store) (probe.Identity, bool, error) {
	st, err := readState(store)
	if err != nil {
		return probe.Identity{}, false, err
	}
	id := probe.Identity{PID: st.PID, Start: st.PIDStart, Boot: st.BootID}
	if !probe.Alive(id) || !probe.ExecutableIs(id.PID, program) {
		return id, false, nil
	}
	held, err := lockHeldByProbe(store)
	return id, held && err == nil, nil
}

// lockHeldByProbe tells whether the watchdog lock is held by trying a
// shared lock on it (where the kernel cannot be asked). A user who may not
// open the lock file cannot tell, and is told it is not held.
func lockHeldByProbe(store *registry.Store) (bool, error) {
	fl, err := store.NewLock(LockPath(store))
	if err != nil {
		return false, err
	}
	defer fl.Close()
	free, err := fl.TryLockShared()
	return !free, err
}

// LockHeld reports whether any process holds store's watchdog lock: one
// runs, or is starting. It never takes the lock itself on Linux, so it can
// never make a starting watchdog think another runs.
func LockHeld(store *registry.Store) (bool, error) {
	pids, err := LockHolders(store)
	if errors.Is(err, ErrNoLockTable) {
		return lockHeldByProbe(store)
	}
	return len(pids) > 0, err
}

// ErrNotRunning: no watchdog runs for the registry.
var ErrNotRunning = errors.New("no watchdog is running")

// Stop sends SIGTERM to store's running watchdog, found by Running, and
// waits (at most timeout) until it has exited. The process is pinned with a
// pidfd before it is checked once more and signalled, so nothing else ever
// gets the signal. It returns the watchdog stopped, or ErrNotRunning.
func Stop(ctx context.Context, store *registry.Store, timeout time.Duration) (probe.Identity, error) {
	if runtime.GOOS != "linux" {
		return probe.Identity{}, fmt.Errorf("watch --stop needs the kernel's lock table (Linux); stop the watchdog where it was started (its service manager, or its terminal)")
	}
	id, ok, err := Running(store)
	if err != nil {
		return id, err
	}
	if !ok {
		return id, ErrNotRunning
	}
	if err := probe.Signal(id, syscall.SIGTERM); err != nil {
		if errors.Is(err, probe.ErrNoProcess) {
			return id, ErrNotRunning
		}
		return id, fmt.Errorf("cannot stop the watchdog (pid %d): %w", id.PID, err)
	}
	deadline := time.Now().Add(timeout)
	for probe.Alive(id) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return id, fmt.Errorf("the watchdog (pid %d) did not exit within %s of SIGTERM", id.PID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return id, nil
}
