package cmd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type checkOptions struct {
	g      *globals
	probe  watchdog.Options
	json   bool
	dryRun bool
}

// addProbeFlags declares the flags that tune a watchdog cycle, shared by
// check and watch.
func addProbeFlags(f *pflag.FlagSet, o *watchdog.Options) {
	f.DurationVar(&o.HealthTimeout, "health-timeout", 2*time.Second, "timeout of one health check")
	f.DurationVar(&o.StartupGrace, "startup-grace", watchdog.DefaultStartupGrace, "how long a live owner may take to start listening")
	f.IntVar(&o.UnhealthyAfter, "unhealthy-after", watchdog.DefaultUnhealthyAfter, "consecutive failed health checks before a port is unhealthy")
	f.DurationVar(&o.ReservationLease, "lease", watchdog.DefaultReservationLease, "how long a reservation may stay unclaimed")
	f.IntVar(&o.Concurrency, "concurrency", watchdog.DefaultConcurrency, "probes run at once")
}

// portCount is "1 port" or "N ports".
func portCount(n int) string {
	if n == 1 {
		return "1 port"
	}
	return strconv.Itoa(n) + " ports"
}

func checkProbeFlags(o *watchdog.Options) error {
	switch {
	case o.HealthTimeout <= 0:
		return usageErrorf("--health-timeout %s: must be positive", o.HealthTimeout)
	case o.StartupGrace < 0:
		return usageErrorf("--startup-grace %s: must not be negative", o.StartupGrace)
	case o.ReservationLease <= 0:
		return usageErrorf("--lease %s: must be positive", o.ReservationLease)
	case o.UnhealthyAfter < 1:
		return usageErrorf("--unhealthy-after %d: must be positive", o.UnhealthyAfter)
	case o.Concurrency < 1:
		return usageErrorf("--concurrency %d: must be positive", o.Concurrency)
	}
	return nil
}

func newCheckCmd(g *globals) *cobra.Command {
	o := &checkOptions{g: g}
	c := &cobra.Command{
		Use:   "check",
		Short: "Run one watchdog cycle now and report every port",
		Long: `Probe every allocation once, as the watchdog does: is the owner alive (PID and
start time), is the port listening, does the health endpoint answer. Print a
table, apply the new health statuses, and release the ports of dead services
and stale reservations. --dry-run reports without changing anything.` + exitHelp([]int{exitOK, exitFailure, exitUsage, exitLocked, exitCheckFailed}, map[int]string{
			exitOK:      "every port is fine",
			exitFailure: "an issue was found (crashed process, non-responsive port, failed health check, stale reservation, orphaned, foreign or unmanaged listener)",
		}),
		Example: `  gracectl check
  gracectl check --dry-run --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkProbeFlags(&o.probe); err != nil {
				return err
			}
			return runCheck(cmd, o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.json, "json", false, "print the results as JSON")
	f.BoolVar(&o.dryRun, "dry-run", false, "report only; change nothing")
	addProbeFlags(f, &o.probe)
	return c
}

func runCheck(cmd *cobra.Command, o *checkOptions) error {
	o.probe.DryRun = o.dryRun
	rg, err := o.g.watchedRange()
	if err != nil {
		return err
	}
	o.probe.Range = rg
	o.probe.Engines = o.g.engines()
	store := o.g.store()
	if _, err := o.g.lookForRegistry(store); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			ee.code = exitCheckFailed // the check could not run
		}
		return err
	}
	rep, err := watchdog.Cycle(cmd.Context(), store, o.probe)
	var le *registry.LockError
	if err != nil && !errors.As(err, &le) {
		// Not "an issue was found": the check itself could not run.
		return &exitError{code: exitCheckFailed, err: err, hint: permissionHint(err)}
	}
	if err != nil {
		return err
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(o.g.stderr, "gracectl: warning: %s\n", oneLine(w))
	}
	if o.json {
		if err := printJSON(o.g.stdout, rep); err != nil {
			return err
		}
	} else {
		writeCheckTable(o.g.stdout, rep)
	}
	if rep.Issues > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

// checkColumns are the table's column titles, as written.
var checkColumns = []string{"Port", "Service", "PID", "Process", "Listening", "Health", "Status", "Last check", "Requests", "Errors"}

// writeCheckTable prints the report; a write error shows when Main flushes
// the output.
func writeCheckTable(w io.Writer, rep *watchdog.Report) {
	rows := make([][]string, 0, len(rep.Results)+len(rep.Unmanaged))
	for _, r := range rep.Results {
		pid := "-"
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		listening := "no"
		if r.Listening {
			listening = "yes"
		}
		process := escape(r.Process)
		if r.Container != nil {
			process = escape(r.Container.Describe())
		}
		rows = append(rows, []string{
			strconv.Itoa(r.Port), escape(r.Label()), pid, orDash(process), listening,
			escape(r.Health), r.Status, r.LastCheck.Format("15:04:05"),
			strconv.FormatInt(r.RequestCount, 10), strconv.FormatInt(r.ErrorCount, 10),
		})
	}
	// Listeners without an allocation, after the allocations.
	for _, u := range rep.Unmanaged {
		pid := "-"
		if u.PID > 0 {
			pid = strconv.Itoa(u.PID)
		}
		process := escape(u.Command)
		if u.Container != nil {
			process = escape(u.Container.Describe())
		}
		listening := "yes"
		if u.NAT {
			listening = "NAT only"
		}
		rows = append(rows, []string{strconv.Itoa(u.Port), "-", pid, orDash(process), listening, "-", "unmanaged",
			rep.StartedAt.Format("15:04:05"), "-", "-"})
	}
	writeTable(w, checkColumns, rows)
	// Straight to w, which Main buffers: at thousands of ports these lines
	// are hundreds of KB, not worth a builder of their own.
	fmt.Fprintf(w, "%s (%.1f ms)\n", rep.Summary(), rep.DurationMS)
	for _, r := range rep.Results {
		if r.Issue != "" {
			fmt.Fprintf(w, "issue: port %d (%s): %s\n", r.Port, escape(r.Label()), escape(r.Issue))
		}
	}
	for _, u := range rep.Unmanaged {
		fmt.Fprintf(w, "issue: port %d: %s (gracectl adopt %d takes it in)\n", u.Port, escape(u.Issue()), u.Port)
	}
	if k := rep.KernelReserved; k != nil && k.Reserved != "unknown" {
		fmt.Fprintf(w, "kernel reserved: %s\n", reserveText(*k))
	}
	if len(rep.HeldElsewhere) > 0 {
		fmt.Fprintf(w, "held by the host registry: %s (%s)\n", portCount(len(rep.HeldElsewhere)), heldList(rep.HeldElsewhere))
	}
	for _, r := range rep.Results {
		if r.Action != "" {
			fmt.Fprintf(w, "action: port %d (%s): %s\n", r.Port, escape(r.Label()), escape(r.Action))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
