package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe/portinfo"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type whyOptions struct {
	g    *globals
	port int
	json bool
}

func newWhyCmd(g *globals) *cobra.Command {
	o := &whyOptions{g: g}
	c := &cobra.Command{
		Use:   "why PORT",
		Short: "Say why a port is or is not free, from every source",
		Long: `Say why PORT is busy or free: its allocation (service, owner, state), every
socket of this network namespace on it (TCP and UDP, IPv4 and IPv6, listening
on every address or one; the processes holding each, their user and their
parents up to a known supervisor: gracectl run, systemd and its unit, a
container engine), sockets that use it without listening (an outgoing
connection's local port, a TIME-WAIT and how long it has left), sockets on it
in other network namespaces that can be looked into, whether the kernel's
ephemeral range or its reserved ports hold it, and whether the managed range
does.

The port is busy when an allocation holds it, or a socket of this network
namespace other than a TIME-WAIT uses it, or a TCP server could not bind it
now. A TIME-WAIT keeps a server that sets SO_REUSEADDR (most do) off the port
only when its own socket did not set it (an outgoing connection's, usually);
a socket in another network namespace never does.` + exitHelp(readerExits, map[int]string{
			exitOK: "the port is free", exitFailure: "the port is busy (or the registry could not be read)"}),
		Example: `  gracectl why 8000
  gracectl why 8050 --json | jq '.reasons'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := portArg("why", args)
			if err != nil {
				return err
			}
			o.port = p
			return runWhy(cmd, o)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the answer as JSON")
	return c
}

func runWhy(cmd *cobra.Command, o *whyOptions) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	store := o.g.store()
	r, err := store.Read(cmd.Context())
	if err != nil {
		return err
	}
	held, _ := store.HeldElsewhere(cmd.Context(), registry.Range{Start: o.port, End: o.port})
	w := portinfo.Explain(cmd.Context(), portinfo.Query{Port: o.port, Registry: r, Managed: rg, Engines: o.g.engines(), HeldElsewhere: held})
	if o.json {
		err = printJSON(o.g.stdout, w)
	} else {
		writeWhy(o.g.stdout, w)
	}
	if err == nil && !w.Free {
		return &exitError{code: exitFailure}
	}
	return err
}

// writeWhy prints the answer: the verdict and its reasons, then each
// source.
func writeWhy(out io.Writer, w *portinfo.Why) {
	if w.Free {
		fmt.Fprintf(out, "port %d: free\n", w.Port)
	} else {
		fmt.Fprintf(out, "port %d: busy\n", w.Port)
	}
	for _, r := range w.Reasons {
		fmt.Fprintf(out, "  because %s\n", escape(r))
	}
	if a := w.Allocation; a != nil {
		owner := "none yet (a reservation)"
		switch {
		case w.Owner != nil:
			owner = processText(*w.Owner)
		case a.PID > 0:
			owner = fmt.Sprintf("pid %d, not running here", a.PID)
		}
		fmt.Fprintf(out, "allocation: %s %s, %s; owner %s\n", escape(a.Label()), sinceText(a.AllocatedAt), escape(a.HealthStatus), owner)
	} else {
		fmt.Fprintf(out, "allocation: none\n")
	}
	if h := w.HeldElsewhere; h != nil {
		fmt.Fprintf(out, "host registry: %s\n", heldList([]registry.Held{*h}))
	}
	if len(w.Sockets) == 0 {
		fmt.Fprintf(out, "sockets: none\n")
	}
	for _, s := range w.Sockets {
		writeSocket(out, "socket", s)
	}
	if w.Omitted > 0 {
		fmt.Fprintf(out, "socket: %d more connections\n", w.Omitted)
	}
	for _, s := range w.OtherNamespaces {
		writeSocket(out, fmt.Sprintf("network namespace %d", s.NetNS), s)
	}
	fmt.Fprintf(out, "bind test: %s\n", map[bool]string{true: "a TCP server can bind it now (IPv4 and IPv6 wildcards)", false: "a TCP server cannot bind it now"}[w.Bindable])
	fmt.Fprintf(out, "ephemeral range: %s\n", rangeFactText(w.Ephemeral, "outgoing connections may take it at any moment", "outgoing connections do not take it"))
	switch r := w.Reserved; {
	case !r.Known:
		fmt.Fprintf(out, "kernel reserved ports: cannot be read here\n")
	case r.Contains:
		fmt.Fprintf(out, "kernel reserved ports (%s): hold it; no outgoing connection or bind to port 0 takes it\n", r.List)
	default:
		fmt.Fprintf(out, "kernel reserved ports (%s): do not hold it\n", orDash(r.List))
	}
	fmt.Fprintf(out, "managed range: %s\n", rangeFactText(w.Managed, "gracectl hands it out", "gracectl does not hand it out"))
}

func rangeFactText(f portinfo.RangeFact, in, out string) string {
	switch {
	case !f.Known:
		return "cannot be read here"
	case f.Contains:
		return fmt.Sprintf("%s holds it: %s", f.Range, in)
	}
	return fmt.Sprintf("%s does not hold it: %s", f.Range, out)
}

// writeSocket prints one socket and the processes holding it.
func writeSocket(out io.Writer, label string, s portinfo.Socket) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s %s", label, s.Proto, s.State, s.Local)
	if s.Remote != "" {
		fmt.Fprintf(&b, " → %s", s.Remote)
	}
	if s.Wildcard {
		b.WriteString(" (every address)")
	}
	if s.State == "TIME-WAIT" && s.ExpiresSeconds > 0 {
		fmt.Fprintf(&b, ", %s left", time.Duration(s.ExpiresSeconds*float64(time.Second)).Round(time.Second))
	}
	if s.User != "" && len(s.Processes) == 0 {
		fmt.Fprintf(&b, ", user %s", escape(s.User))
	}
	fmt.Fprintln(out, b.String())
	if len(s.Processes) == 0 && s.State != "TIME-WAIT" {
		fmt.Fprintf(out, "  held by %s\n", portinfo.Unseen())
	}
	for _, p := range s.Processes {
		fmt.Fprintf(out, "  %s\n", processText(p))
	}
}

// processText is a process, its parents and its supervisor on one line.
func processText(p portinfo.Process) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d %s (user %s)", p.PID, escape(p.Command), orDash(escape(p.User)))
	if c := p.Container; c != nil {
		fmt.Fprintf(&b, ", publishing %s, id %s", escape(c.Describe()), c.Short())
	}
	if len(p.Parents) > 0 {
		b.WriteString("; parents:")
		for _, a := range p.Parents {
			fmt.Fprintf(&b, " %d %s", a.PID, escape(a.Name))
		}
	}
	if s := p.Supervisor; s != nil {
		switch s.Kind {
		case "systemd":
			fmt.Fprintf(&b, "; under systemd")
			if s.Name != "" {
				fmt.Fprintf(&b, ", unit %s", escape(s.Name))
			}
		case "container":
			fmt.Fprintf(&b, "; in a container (%s, pid %d)", escape(s.Name), s.PID)
		case "gracectl run":
			fmt.Fprintf(&b, "; under gracectl run (pid %d)", s.PID)
		default:
			fmt.Fprintf(&b, "; under init (pid 1, %s)", escape(s.Name))
		}
	}
	return b.String()
}
