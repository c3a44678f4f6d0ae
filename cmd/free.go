package cmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/portinfo"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type freeOptions struct {
	g      *globals
	port   int
	grace  time.Duration
	force  bool
	dryRun bool
	reason string
	json   bool
}

// FreeResult is what `gracectl free --json` prints.
type FreeResult struct {
	portinfo.FreePlan
	DryRun bool `json:"dry_run"`
	// Signal is how the processes were stopped: SIGTERM, SIGKILL (after
	// the grace time), "engine stop" for a container; empty for a dry run
	// or when nothing listened.
	Signal string `json:"signal,omitzero"`
	// Released: the port's allocation was released with its owner.
	Released bool `json:"released"`
}

func newFreeCmd(g *globals) *cobra.Command {
	o := &freeOptions{g: g}
	c := &cobra.Command{
		Use:   "free PORT [--grace D] [--force] [--dry-run]",
		Short: "Stop the process that listens on a port, and only it",
		Long: `Stop the process listening on PORT (TCP, or bound to it over UDP) and no
other: SIGTERM, then SIGKILL after --grace if it is still running. Each
process is pinned by a pidfd and checked against the start time it was seen
with, so a PID reused meanwhile is never signalled; a process that cannot be
identified so, pid 1, a kernel thread and gracectl itself are never stopped.
Of a pre-fork server, the parent is sent SIGTERM, not each worker that holds
the socket too; whatever still holds it after the grace time is SIGKILLed.
A port a container publishes (its engine's proxy listens) is freed by
stopping the container through its engine, as 'docker stop' does.

A port gracectl allocated whose owner is running and is not the caller (or
one of its ancestors) needs --force, as release does. When the stopped
process owned the port and no 'gracectl run' supervises it, its allocation
is released too. The audit log records who freed the port, why (--reason),
and what was stopped how. --dry-run names what would be stopped.

Nothing listening is not an error: it says so and exits 0.` + exitHelp(writerExits, map[int]string{
			exitFailure: "nothing was stopped, or a process outlived SIGKILL (the message says why)"}),
		Example: `  gracectl free 8050
  gracectl free 8050 --dry-run
  gracectl free 8000 --force --grace 30s --reason "hung after deploy"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := portArg("free", args)
			if err != nil {
				return err
			}
			if o.grace < 0 {
				return usageErrorf("--grace must not be negative, got %s", o.grace)
			}
			if err := registry.CheckText("reason", o.reason, registry.MaxPurpose); err != nil {
				return &usageError{msg: err.Error()}
			}
			o.port = p
			return runFree(cmd, o)
		},
	}
	f := c.Flags()
	f.DurationVar(&o.grace, "grace", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	f.BoolVar(&o.force, "force", false, "stop the listener of a port allocated to a running owner other than the caller")
	f.BoolVar(&o.dryRun, "dry-run", false, "name what would be stopped; stop nothing")
	f.StringVar(&o.reason, "reason", "freed by user", "why, for the audit log")
	f.BoolVar(&o.json, "json", false, "print what was (or would be) stopped as JSON")
	return c
}

func runFree(cmd *cobra.Command, o *freeOptions) error {
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	ctx := cmd.Context()
	store := o.g.store()
	r, err := store.Read(ctx)
	if err != nil {
		return err
	}
	obs, err := portinfo.ObserveFree(ctx, o.port, r, o.g.engines())
	if err != nil {
		return fmt.Errorf("cannot read the socket tables to find who listens on port %d (%s)", o.port, oneLine(err.Error()))
	}
	obs.Self, obs.Callers, obs.Force = os.Getpid(), append([]int{os.Getpid()}, probe.Ancestors(os.Getpid())...), o.force
	plan, err := portinfo.DecideFree(obs)
	var re *portinfo.RefusedError
	if errors.As(err, &re) {
		return &exitError{code: exitFailure, err: re, hint: re.Hint}
	}
	res := &FreeResult{FreePlan: plan, DryRun: o.dryRun}
	switch {
	case plan.Nothing:
		fmt.Fprintf(o.g.stderr, "gracectl: nothing listens on port %d; nothing to stop\n", o.port)
	case o.dryRun:
		for _, line := range planLines(plan, o.grace) {
			fmt.Fprintf(o.g.stderr, "gracectl: would %s\n", line)
		}
	default:
		if err := stopPlan(cmd, o, plan, res); err != nil {
			return err
		}
	}
	if o.json {
		return printJSON(o.g.stdout, res)
	}
	return nil
}

// planLines say what the plan stops, a line each.
func planLines(plan portinfo.FreePlan, grace time.Duration) []string {
	if c := plan.Container; c != nil {
		return []string{fmt.Sprintf("stop %s, id %s, through its engine (its stop signal, then its stop timeout)", escape(c.Describe()), c.Short())}
	}
	var out []string
	for _, h := range plan.Stop {
		out = append(out, fmt.Sprintf("send SIGTERM to pid %d %s (user %s)", h.PID, escape(h.Command), orDash(escape(h.User))))
	}
	out = append(out, fmt.Sprintf("send SIGKILL after %s to whatever of pid %s still runs", grace, pidList(plan.All)))
	return out
}

func pidList(hs []portinfo.Holder) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = fmt.Sprint(h.PID)
	}
	return strings.Join(s, ", ")
}

// stopPlan stops what the plan names and records it in the audit log.
func stopPlan(cmd *cobra.Command, o *freeOptions, plan portinfo.FreePlan, res *FreeResult) error {
	ctx := cmd.Context()
	ev := &registry.FreeEvent{Port: o.port, Forced: plan.Forced, By: "cli", ByUser: userName(os.Getuid()), Reason: o.reason}
	if plan.Container != nil {
		uid := -1
		for _, h := range plan.All {
			if h.Container != nil {
				uid = h.UID
			}
		}
		if err := o.g.engines().Stop(ctx, *plan.Container, uid); err != nil {
			return fmt.Errorf("could not stop %s through its engine: %s", escape(plan.Container.Describe()), oneLine(err.Error()))
		}
		res.Signal = "engine stop"
		ev.Container = registry.NewContainer(*plan.Container, false)
	} else {
		sig, err := signalAll(plan, o.grace)
		if err != nil {
			return err
		}
		res.Signal = sig
	}
	ev.Signal = res.Signal
	for _, h := range plan.All {
		ev.PIDs, ev.Commands = append(ev.PIDs, h.PID), append(ev.Commands, h.Command)
	}
	id := ""
	if plan.Alloc != nil {
		id, ev.ServiceName = plan.Alloc.ID, plan.Alloc.ServiceName
	}
	if err := o.g.store().RecordFree(ctx, ev, id); err != nil {
		return fmt.Errorf("port %d was freed, but the audit log could not be written: %w", o.port, err)
	}
	res.Released = ev.Released
	what := "pid " + pidList(plan.All)
	if plan.Container != nil {
		what = plan.Container.Describe()
	}
	fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Freed port %d: stopped %s (%s)\n", o.port, escape(what), res.Signal)
	if ev.Released {
		fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Released port %d (%s)\n", o.port, escape(ev.ServiceName))
	}
	return nil
}

// signalAll pins every holder, sends SIGTERM to the topmost ones, waits
// up to grace for all of them to exit, and SIGKILLs those that did not.
// It returns the last signal it had to send.
func signalAll(plan portinfo.FreePlan, grace time.Duration) (string, error) {
	var pinned []*probe.Pinned
	defer func() {
		for _, p := range pinned {
			p.Close()
		}
	}()
	top := map[int]bool{}
	for _, h := range plan.Stop {
		top[h.PID] = true
	}
	var term []*probe.Pinned
	for _, h := range plan.All {
		p, err := probe.Pin(h.PID, h.Start)
		switch {
		case errors.Is(err, probe.ErrNoProcess) || errors.Is(err, probe.ErrNotSame):
			continue // it ended meanwhile
		case err != nil:
			return "", fmt.Errorf("cannot pin pid %d to stop it safely (%s); nothing was stopped", h.PID, oneLine(err.Error()))
		}
		pinned = append(pinned, p)
		if top[h.PID] {
			term = append(term, p)
		}
	}
	for _, p := range term {
		if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, probe.ErrNoProcess) {
			return "", signalError(p.PID, err)
		}
	}
	left := probe.WaitExits(pinned, grace)
	if len(left) == 0 {
		return "SIGTERM", nil
	}
	for _, p := range left {
		if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, probe.ErrNoProcess) {
			return "", signalError(p.PID, err)
		}
	}
	if left = probe.WaitExits(left, 10*time.Second); len(left) > 0 {
		return "", fmt.Errorf("pid %d still runs 10s after SIGKILL (stuck in the kernel?)", left[0].PID)
	}
	return "SIGKILL", nil
}

func signalError(pid int, err error) error {
	if errors.Is(err, syscall.EPERM) {
		return &exitError{code: exitFailure, err: fmt.Errorf("not permitted to signal pid %d, another user's process", pid), hint: "run as root, or as its user"}
	}
	return fmt.Errorf("cannot signal pid %d: %s", pid, oneLine(err.Error()))
}
