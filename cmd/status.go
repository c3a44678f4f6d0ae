package cmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type statusOptions struct {
	g     *globals
	json  bool
	fleet fleetFlags
}

func newStatusCmd(g *globals) *cobra.Command {
	o := &statusOptions{g: g}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the port manager status report (check_ports.py)",
		Long: `Print the port manager status report: the range, every allocation sorted by
port, and the watchdog's state. The registry file read is named on stderr
(where there is none yet, a note says so instead).
--json prints the same facts as one document, the one GET /api/ports/status
returns (see docs/json.md).

With --fleet, the report of every host of the fleet, read from etcd within
--fleet-timeout: each host under a HOST line naming its host id (and its
host name when that differs), then the fleet's totals (docs/fleet.md).` + exitHelp(fleetReaderExits, nil),
		Example: `  gracectl status
  gracectl status --json | jq '.allocations[].port'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStatus(cmd, o) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the status as JSON")
	addFleetFlags(c.Flags(), g, &o.fleet, "the report of every host of the fleet, read from etcd", true)
	return c
}

func runStatus(cmd *cobra.Command, o *statusOptions) error {
	if o.fleet.enabled() {
		v, err := readFleet(cmd.Context(), o.g, &o.fleet)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(o.g.stdout, v)
		}
		return writeFleetReport(o.g.stdout, v)
	}
	rg, err := o.g.watchedRange()
	if err != nil {
		return err
	}
	store := o.g.store()
	noted, err := o.g.lookForRegistry(store)
	if err != nil {
		return err
	}
	st, err := watchdog.ReadStatus(cmd.Context(), store, rg, o.g.engines())
	if err != nil {
		return err
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(o.g.stderr, "gracectl: warning: %s\n", oneLine(w))
	}
	if o.json {
		return printJSON(o.g.stdout, st)
	}
	if !noted {
		// Not after the note that there is no registry yet: the file it
		// would name does not exist.
		fmt.Fprintf(o.g.stderr, "gracectl: registry %s\n", escape(st.Registry))
	}
	return writeStatusReport(o.g.stdout, st)
}

var rule = strings.Repeat("=", 70)

func section(b io.Writer, title string) {
	fmt.Fprintf(b, "%s\n%s\n%s\n\n", rule, title, rule)
}

// writeStatusReport prints the seed's check_ports.py report.
func writeStatusReport(w io.Writer, st *watchdog.Status) error {
	return writeReport(w, st, watchdogLines(st.Watchdog))
}

// watchdogLines are the WATCHDOG STATUS section of the local report.
func watchdogLines(wd *watchdog.State) []string {
	lines := []string{"Running: " + pyBool(wd.Running), "Check Interval: " + seconds(wd.IntervalSeconds),
		fmt.Sprintf("Checks Performed: %d", wd.ChecksPerformed), fmt.Sprintf("Issues Detected: %d", wd.IssuesDetected),
		fmt.Sprintf("Stale Cleaned: %d", wd.StaleCleaned), fmt.Sprintf("Monitored Ports: %d", wd.MonitoredPorts)}
	if wd.Running && strings.HasPrefix(wd.APIAccess, "remote") {
		// Said where people look: an API open to other hosts.
		lines = append(lines, "API: "+wd.APIAccess)
	}
	if wd.Running && wd.Routes != nil {
		lines = append(lines, fmt.Sprintf("Routes: %s (SERVICE.%s on %s; gracectl routes)", escape(wd.Routes.Proxy), wd.Routes.Domain, wd.Routes.Listen))
	}
	return lines
}

// writeReport prints the report with the given lines in its WATCHDOG
// STATUS section.
func writeReport(w io.Writer, st *watchdog.Status, wdLines []string) error {
	// Through a small buffer: the report of thousands of allocations is
	// never built whole in memory.
	b := bufio.NewWriterSize(w, 64<<10)
	section(b, "GRACE PORT MANAGER STATUS")
	fmt.Fprintf(b, "Port Range: %d-%d\n", st.Range.Start, st.Range.End)
	fmt.Fprintf(b, "Total Ports Available: %d\n", st.TotalPorts)
	fmt.Fprintf(b, "Allocated: %d\n", st.Allocated)
	if st.OutsideRange > 0 {
		fmt.Fprintf(b, "Allocated outside the range: %d (listed below, not counted above)\n", st.OutsideRange)
	}
	fmt.Fprintf(b, "Available: %d\n", st.Available)
	if n := len(st.Unmanaged); n > 0 {
		fmt.Fprintf(b, "Unmanaged: %d\n", n) // listened on without an allocation
	}
	if k := st.KernelReserved; k.Ports > 0 {
		// Only when it is: the seed's report has no such line.
		fmt.Fprintf(b, "Kernel Reserved: %s\n", reserveText(k))
	}
	if n := len(st.HeldElsewhere); n > 0 {
		fmt.Fprintf(b, "Held by the host registry: %d (%s)\n", n, heldList(st.HeldElsewhere))
	}
	b.WriteString("\n")
	section(b, "ALLOCATED PORTS")
	if len(st.Allocations) == 0 {
		b.WriteString("No ports allocated\n\n")
	}
	// Appends rather than Fprintf: measured faster at thousands of
	// allocations (docs/benchmarks).
	line := make([]byte, 0, 512)
	for _, a := range st.Allocations {
		line = append(line[:0], "Port "...)
		line = strconv.AppendInt(line, int64(a.Port), 10)
		line = append(line, ": "...)
		line = append(line, escape(a.Label())...)
		line = append(line, "\n  Started by: "...)
		line = append(line, escape(a.StartedBy)...)
		line = append(line, "\n  Purpose: "...)
		line = append(line, escape(a.Purpose)...)
		line = append(line, "\n  PID: "...)
		if a.PID > 0 {
			line = strconv.AppendInt(line, int64(a.PID), 10)
		} else {
			line = append(line, "none (reserved)"...)
		}
		line = append(line, "\n  Status: "...)
		line = append(line, escape(a.HealthStatus)...)
		line = append(line, "\n  Allocated: "...)
		line = append(line, a.AllocatedAt.String()...)
		line = append(line, "\n  Requests: "...)
		line = strconv.AppendInt(line, a.RequestCount, 10)
		line = append(line, "\n  Errors: "...)
		line = strconv.AppendInt(line, a.ErrorCount, 10)
		line = append(line, "\n\n"...)
		b.Write(line)
	}
	section(b, "WATCHDOG STATUS")
	for _, l := range wdLines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Flush()
}

// reserveText says how much of rg the kernel's reserved ports hold.
func reserveText(k watchdog.KernelReserve) string {
	switch k.Reserved {
	case "yes":
		return "yes (net.ipv4.ip_local_reserved_ports)"
	case "partly":
		return fmt.Sprintf("partly, %d of %d ports (net.ipv4.ip_local_reserved_ports is %s)", k.Ports, k.Range.Size(), k.List)
	case "no":
		return "no (gracectl init --reserve keeps outgoing connections off the range)"
	}
	return "unknown (the kernel's reserved ports cannot be read here)"
}

// heldList names the ports another registry holds: "8001 grace_backend,
// 8007 api (admin)", and the registry once.
func heldList(held []registry.Held) string {
	var b strings.Builder
	for i, h := range held {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", h.Port, escape(h.ServiceName))
		if h.PortName != "" {
			fmt.Fprintf(&b, " (%s)", escape(h.PortName))
		}
	}
	fmt.Fprintf(&b, "; in %s, skipped by allocate here", escape(held[0].Registry))
	return b.String()
}

func pyBool(v bool) string {
	if v {
		return "True"
	}
	return "False"
}

// seconds prints an interval given in seconds as the seed does ("30s").
func seconds(s float64) string {
	return watchdog.FormatInterval(time.Duration(s * float64(time.Second)))
}

// rootMissing is the error of a command that reads or changes what is
// allocated (not one that makes a registry: allocate, run, adopt, init,
// watch) when the folder named by --root or $GRACECTL_ROOT does not
// exist: a mistyped path, not an empty registry.
func (g *globals) rootMissing() error {
	if g.rootSource != registry.RootFlag && g.rootSource != registry.RootEnv {
		return nil
	}
	if _, err := os.Stat(g.root); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return &exitError{code: exitFailure,
		err:  fmt.Errorf("no registry in %s: the folder does not exist", escape(g.root)),
		hint: fmt.Sprintf("check the path given to %s; the first allocate or run there creates a registry, as does 'gracectl init --root DIR'", g.rootSource)}
}

// lookForRegistry is what a command that only reads (status, check) says
// when no registry is where it looks. A folder named by --root or
// $GRACECTL_ROOT that does not exist is an error (a mistyped path, not an
// empty registry); a registry not made yet is a note on stderr, and the
// command goes on with an empty one. noted says the note was printed.
func (g *globals) lookForRegistry(s *registry.Store) (noted bool, err error) {
	if _, err := os.Stat(s.Path()); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return false, nil // there, or a problem the read itself reports
	}
	if err := g.rootMissing(); err != nil {
		return false, err
	}
	fmt.Fprintf(g.stderr, "gracectl: no registry in %s yet (the first allocate or run creates %s); nothing is allocated\n", escape(g.root), escape(s.Path()))
	return true, nil
}
