package cmd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

// `gracectl run` starts the watchdog when none runs for the registry, as
// the seed's serve.py does: `gracectl watch` in its own session, stdin from
// /dev/null, its log appended to logs/port_manager/watchdog.log, exiting by
// itself once the registry has held no allocation for a while.

// DefaultAutoWatchIdle is how long a watchdog `run` started waits with an
// empty registry before it exits; $GRACECTL_WATCHDOG_IDLE sets another.
const DefaultAutoWatchIdle = 10 * time.Minute

const detachName = "__detach"

// ensureWatchdog starts a background watchdog for the registry unless one
// runs, and says whether one runs now. It never fails the run: problems are
// said on stderr. quiet leaves out the notice that one was started.
func ensureWatchdog(ctx context.Context, g *globals, store *registry.Store, rg registry.Range, quiet bool) bool {
	if st, err := watchdog.LoadState(store); err == nil && st.Running {
		return true
	}
	warn := func(err error) bool {
		fmt.Fprintf(g.stderr, "gracectl: warning: cannot start the watchdog: %s\n", oneLine(registry.PlainText(err)))
		return false
	}
	if err := store.EnsureDir(); err != nil {
		return warn(err)
	}
	// Runs starting together take turns here, so only the first starts a
	// watchdog; the others find it holding its lock.
	start, err := store.NewLock(filepath.Join(store.Dir(), "watchdog.start.lock"))
	if err != nil {
		return warn(err)
	}
	if err := start.Wait(ctx, 10*time.Second); err != nil {
		return warn(fmt.Errorf("another gracectl run is starting one: %w", err))
	}
	defer start.Close()
	held, err := watchdog.LockHeld(store)
	if err != nil {
		return warn(err)
	}
	if !held {
		if err := spawnWatchdog(g, store, rg, quiet); err != nil {
			return warn(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !held && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			held, _ = watchdog.LockHeld(store)
		}
	}
	return waitRunning(ctx, store)
}

// waitRunning waits (3 s at most) for the registry's watchdog to say it runs.
func waitRunning(ctx context.Context, store *registry.Store) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := watchdog.LoadState(store); err == nil && st.Running {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// spawnWatchdog starts `gracectl watch` through `gracectl __detach`, which
// starts it in a session of its own and exits at once: the watchdog is then
// nobody's child (its parent is init), so it outlives this run and is never
// taken for a descendant of the service.
func spawnWatchdog(g *globals, store *registry.Store, rg registry.Range, quiet bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := store.OpenLogFile("watchdog.log")
	if err != nil {
		return err
	}
	logPath := log.Name()
	defer log.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	idle := g.env.watchdogIdle
	c := exec.Command(self, detachName, "--", self, "watch", "--root", store.Root, "--range", rg.String(),
		"--exit-when-idle", idle.String(), "--from-run")
	c.Stdin, c.Stdout, c.Stderr = devnull, log, log
	// Not systemd's, not the service's: the watchdog talks to neither.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		c.Env = append(c.Env, kv)
	}
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w", detachName, err)
	}
	if !quiet {
		fmt.Fprintf(g.stderr, "gracectl: started the watchdog in the background (log: %s)\n", escape(logPath))
	}
	return nil
}

// newDetachCmd is `gracectl __detach -- PROGRAM ARGS...`: start PROGRAM in
// a new session and exit without waiting for it.
func newDetachCmd() *cobra.Command {
	return &cobra.Command{
		Use:    detachName + " -- PROGRAM [ARGS...]",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("%s: no program", detachName)
			}
			c := exec.Command(args[0], args[1:]...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := c.Start(); err != nil {
				return err
			}
			return c.Process.Release()
		},
	}
}
