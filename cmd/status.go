package cmd

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type statusOptions struct {
	g    *globals
	json bool
}

func newStatusCmd(g *globals) *cobra.Command {
	o := &statusOptions{g: g}
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the port manager status report (check_ports.py)",
		Long: `Print the port manager status report: the range, every allocation sorted by
port, and the watchdog's state. The registry file read is named on stderr.
--json prints the same facts as one document, the one GET /api/ports/status
returns (see docs/json.md).` + exitStatusHelp,
		Example: `  gracectl status
  gracectl status --json | jq '.allocations[].port'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStatus(cmd, o) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the status as JSON")
	return c
}

func runStatus(cmd *cobra.Command, o *statusOptions) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	st, err := o.g.store().Status(cmd.Context(), rg)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.g.stdout, st)
	}
	fmt.Fprintf(o.g.stderr, "gracectl: registry %s\n", escape(st.Registry))
	return writeStatusReport(o.g.stdout, st)
}

var rule = strings.Repeat("=", 70)

func section(b *strings.Builder, title string) {
	fmt.Fprintf(b, "%s\n%s\n%s\n\n", rule, title, rule)
}

// writeStatusReport prints the seed's check_ports.py report.
func writeStatusReport(w io.Writer, st *registry.Status) error {
	var b strings.Builder
	section(&b, "GRACE PORT MANAGER STATUS")
	fmt.Fprintf(&b, "Port Range: %d-%d\n", st.Range.Start, st.Range.End)
	fmt.Fprintf(&b, "Total Ports Available: %d\n", st.TotalPorts)
	fmt.Fprintf(&b, "Allocated: %d\n", st.Allocated)
	fmt.Fprintf(&b, "Available: %d\n\n", st.Available)
	section(&b, "ALLOCATED PORTS")
	if len(st.Allocations) == 0 {
		b.WriteString("No ports allocated\n\n")
	}
	for _, a := range st.Allocations {
		pid := "none (reserved)"
		if a.PID > 0 {
			pid = strconv.Itoa(a.PID)
		}
		fmt.Fprintf(&b, "Port %d: %s\n", a.Port, escape(a.ServiceName))
		fmt.Fprintf(&b, "  Started by: %s\n", escape(a.StartedBy))
		fmt.Fprintf(&b, "  Purpose: %s\n", escape(a.Purpose))
		fmt.Fprintf(&b, "  PID: %s\n", pid)
		fmt.Fprintf(&b, "  Status: %s\n", escape(a.HealthStatus))
		fmt.Fprintf(&b, "  Allocated: %s\n", a.AllocatedAt)
		fmt.Fprintf(&b, "  Requests: %d\n", a.RequestCount)
		fmt.Fprintf(&b, "  Errors: %d\n\n", a.ErrorCount)
	}
	section(&b, "WATCHDOG STATUS")
	wd := st.Watchdog
	fmt.Fprintf(&b, "Running: %s\n", pyBool(wd.Running))
	fmt.Fprintf(&b, "Check Interval: %s\n", seconds(wd.IntervalSeconds))
	fmt.Fprintf(&b, "Checks Performed: %d\n", wd.ChecksPerformed)
	fmt.Fprintf(&b, "Issues Detected: %d\n", wd.IssuesDetected)
	fmt.Fprintf(&b, "Stale Cleaned: %d\n", wd.StaleCleaned)
	fmt.Fprintf(&b, "Monitored Ports: %d\n", wd.MonitoredPorts)
	_, err := io.WriteString(w, b.String())
	return err
}

func pyBool(v bool) string {
	if v {
		return "True"
	}
	return "False"
}

// seconds prints an interval as the seed does ("30s").
func seconds(s float64) string {
	if s == float64(int64(s)) {
		return fmt.Sprintf("%ds", int64(s))
	}
	return (time.Duration(s * float64(time.Second))).String()
}
