package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type allocateOptions struct {
	g          *globals
	service    string
	purpose    string
	startedBy  string
	pid        int
	preferred  int
	healthPath string
	json       bool
	name       string
}

func newAllocateCmd(g *globals) *cobra.Command {
	o := &allocateOptions{g: g}
	c := &cobra.Command{
		Use:   "allocate --service NAME [flags]",
		Short: "Allocate a port and print it",
		Long: `Allocate a port from the managed range and print it alone on stdout, so that
PORT=$(gracectl allocate --service api) works.

The preferred port is tried first, then the next free one upward, wrapping to
the range start. Without --preferred, a service gets the port it held last if
that is free (ports are stable across restarts), and a new service keeps off
ports remembered for others while other ports are free; 'gracectl forget
SERVICE' drops a service's remembered port. A port is free when no
allocation holds it and it can be bound right now on the IPv4 and IPv6
wildcard addresses, so a port any other process listens on is skipped.

Without --pid the allocation is a reservation: bind it to its owner with
'gracectl register PORT --pid N', or the watchdog expires it after its lease.` + exitHelp(append(writerExits, exitExhausted), nil),
		Example: `  PORT=$(gracectl allocate --service grace_backend --purpose "Main API" --pid $$)
  gracectl allocate --service worker --preferred 8050 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("started-by") {
				o.startedBy = callerName()
			}
			return runAllocate(cmd, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.service, "service", "", "service name (required)")
	f.StringVar(&o.purpose, "purpose", "", "why the service needs the port")
	f.StringVar(&o.startedBy, "started-by", "", "what started the service (default: the calling program)")
	f.IntVar(&o.pid, "pid", 0, "PID of the process that owns the port (default: none, a reservation)")
	f.IntVar(&o.preferred, "preferred", 0, "port to try first (default, or 0: the port the service held last, else the range start)")
	f.StringVar(&o.name, "name", "", "a `PORTNAME` for this port, when the service holds several (e.g. admin)")
	f.StringVar(&o.healthPath, "health-path", "", "HTTP path the watchdog checks, e.g. /health")
	f.BoolVar(&o.json, "json", false, "print the whole allocation as JSON")
	return c
}

func runAllocate(cmd *cobra.Command, o *allocateOptions) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	if o.service == "" {
		return usageErrorf("--service is required")
	}
	if o.preferred < 0 || o.preferred > 65535 {
		return usageErrorf("--preferred %d is outside 1-65535", o.preferred)
	}
	var owner probe.Identity
	if cmd.Flags().Changed("pid") {
		if owner, err = identify(o.pid); err != nil {
			return err
		}
	}
	a, err := o.g.store().Allocate(cmd.Context(), registry.Request{
		Service: o.service, Purpose: o.purpose, StartedBy: o.startedBy, Owner: owner,
		Preferred: o.preferred, Range: rg, HealthPath: o.healthPath, PortNames: portNames(o.name),
	})
	if err != nil {
		return requestError(err)
	}
	if o.preferred != 0 {
		notePreferred(cmd.Context(), o.g, o.preferred, a.Port)
	}
	if o.json {
		return printJSON(o.g.stdout, a)
	}
	_, err = fmt.Fprintln(o.g.stdout, a.Port)
	return err
}

// notePreferred says on stderr why a --preferred port was not the one
// handed out, and who holds it.
func notePreferred(ctx context.Context, g *globals, preferred, got int) {
	if preferred == got {
		return
	}
	who := "in use"
	s := g.store()
	held, _ := s.HeldElsewhere(ctx, registry.Range{Start: preferred, End: preferred})
	if r, err := s.Read(ctx); err == nil && r.Get(preferred) != nil {
		cur := r.Get(preferred)
		who = "by " + escape(cur.ServiceName)
		if cur.PID > 0 {
			who += fmt.Sprintf(", pid %d", cur.PID)
		}
	} else if len(held) > 0 {
		who = fmt.Sprintf("by %s in the host registry %s", escape(held[0].ServiceName), escape(held[0].Registry))
	} else if pids := probe.TakeSnapshot().Owners(preferred); len(pids) > 0 {
		who = fmt.Sprintf("by pid %d %s", pids[0], escape(strings.Join(probe.Cmdline(pids[0]), " ")))
	}
	fmt.Fprintf(g.stderr, "gracectl: port %d is taken (%s); allocated %d\n", preferred, strings.TrimSpace(who), got)
}

func portNames(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}

// requestError turns validation failures of a request into usage errors.
func requestError(err error) error {
	if err == nil {
		return nil
	}
	var ne *registry.NumericPortNameError
	if errors.As(err, &ne) {
		return &usageError{msg: err.Error(), hint: fmt.Sprintf("to ask for port %s, use --preferred %s", ne.Name, ne.Name)}
	}
	var ve *registry.ValidationError
	if errors.As(err, &ve) {
		return &usageError{msg: err.Error()}
	}
	return err
}

func identify(pid int) (probe.Identity, error) {
	if pid <= 0 {
		return probe.Identity{}, usageErrorf("--pid %d is not a process ID", pid)
	}
	id, err := probe.Identify(pid)
	var fe *probe.ForeignPIDError
	switch {
	case errors.As(err, &fe):
		return id, err
	case err != nil:
		return id, fmt.Errorf("pid %d is not running", pid)
	}
	return id, nil
}

// callerName names the program that ran gracectl, for started_by.
func callerName() string {
	return registry.SafeText(registry.StartedBy(probe.Cmdline(os.Getppid())), registry.MaxStartedBy)
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %s", cmd.Name(), registry.Quote(args[0]))
	}
	return nil
}
