package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/probe/portinfo"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

// whoOptions are the flags of `gracectl who`: who holds or listens on a port.
type whoOptions struct {
	g     *globals
	json  bool
	fleet fleetFlags
}

// Who is what `gracectl who PORT --json` prints.
type Who struct {
	Port       int                  `json:"port"`
	Allocation *registry.Allocation `json:"allocation,omitzero"`
	// Owner is the allocation's owner as found here: its PID in this view
	// (another than the recorded one when it runs in another PID
	// namespace), its command and user; absent when it does not run or
	// cannot be looked at.
	Owner *WhoProcess `json:"owner,omitzero"`
	// HeldElsewhere is the host registry's allocation of the port, seen
	// from a private, project or --root registry.
	HeldElsewhere *registry.Held `json:"held_elsewhere,omitzero"`
	Listeners     []WhoProcess   `json:"listeners"`
}

// WhoProcess is a process `who` names: the allocation's owner, or one
// listening on the port.
type WhoProcess struct {
	PID     int    `json:"pid"`
	Command string `json:"command,omitzero"`
	User    string `json:"user,omitzero"`
	// Container is the container that publishes the port, when the
	// listener is its engine's proxy.
	Container *container.Info `json:"container,omitzero"`
	// NAT: no process listens on the port (PID is 0); Container publishes
	// it through its engine's NAT rules alone.
	NAT bool `json:"nat,omitzero"`
}

func newWhoCmd(g *globals) *cobra.Command {
	o := &whoOptions{g: g}
	c := &cobra.Command{
		Use:   "who PORT",
		Short: "Tell who holds or listens on a port, managed or not",
		Long: `Tell who holds PORT: its allocation (service, owner and its command, since
when, health) and the processes listening on it (pid, command, user), whether
gracectl manages the port or not. Exit 1 when nobody holds or listens on it.

With --fleet, PORT is HOST:PORT, HOST a host id (as 'port --fleet' prints
it) or a host name that no other host of the fleet has, and the answer is
the allocation etcd holds for it.` + exitHelp(fleetReaderExits, map[int]string{exitFailure: "nobody holds or listens on the port (or the registry could not be read)"}),
		Example: `  gracectl who 8000
  gracectl who 8050 --json
  gracectl who --fleet "$(gracectl port grace_backend --fleet | head -1)"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("who takes one port, got %d arguments", len(args))
			}
			if o.fleet.enabled() {
				return fleetWho(cmd, o, args[0])
			}
			p, err := parsePortArg(args[0])
			if err != nil {
				return err
			}
			return runWho(cmd, o, p)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the answer as JSON")
	addFleetFlags(c.Flags(), g, &o.fleet, "HOST:PORT on any host of the fleet (etcd)", true)
	return c
}

// fleetWho answers `who HOST:PORT --fleet` from etcd.
func fleetWho(cmd *cobra.Command, o *whoOptions, arg string) error {
	hostName, portStr, ok := strings.Cut(arg, ":")
	if !ok {
		return usageErrorf("who --fleet takes HOST:PORT, got %q", arg)
	}
	port, err := parsePortArg(portStr)
	if err != nil {
		return err
	}
	v, err := readFleet(cmd.Context(), o.g, &o.fleet)
	if err != nil {
		return err
	}
	h, err := v.FindHost(hostName)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	for _, a := range h.Allocations {
		if a.Port != port {
			continue
		}
		if o.json {
			return printJSON(o.g.stdout, fleet.Where{HostID: h.Host.ID, Hostname: h.Host.Hostname, Allocation: a})
		}
		fmt.Fprintf(o.g.stdout, "%s:%d: allocated to %s since %s, %s, owner pid %d\n", escape(h.Host.Name()), port,
			escape(a.Label()), a.AllocatedAt, escape(a.HealthStatus), a.PID)
		return nil
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("port %d is not allocated on host %s (the fleet view shows allocations only)", port, escape(h.Host.Name()))}
}

func runWho(cmd *cobra.Command, o *whoOptions, port int) error {
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	store := o.g.store()
	r, err := store.Read(cmd.Context())
	if err != nil {
		return err
	}
	w := Who{Port: port, Allocation: r.Get(port), Listeners: []WhoProcess{}}
	if held, _ := store.HeldElsewhere(cmd.Context(), registry.Range{Start: port, End: port}); len(held) > 0 {
		w.HeldElsewhere = &held[0]
	}
	var ownerLive probe.Liveness
	if a := w.Allocation; a != nil && a.PID > 0 {
		// The recorded PID is its own namespace's: the process is looked
		// up by its NSpid, never read from /proc/PID blindly.
		local, l := probe.Resolve(a.Owner())
		if ownerLive = l; l == probe.Running {
			p := whoProcess(local)
			w.Owner = &p
		}
	}
	snap := probe.TakeSnapshot()
	lk := o.g.engines().Lookup()
	if snap.Listening(cmd.Context(), port) {
		for _, pid := range snap.Owners(port) {
			l := whoProcess(pid)
			l.Container = lk.Publisher(cmd.Context(), port, pid)
			w.Listeners = append(w.Listeners, l)
		}
		if len(w.Listeners) == 0 {
			w.Listeners = append(w.Listeners, WhoProcess{}) // listening, but not ours to see
		}
	} else if in, ok := lk.Published(cmd.Context())[port]; ok {
		w.Listeners = append(w.Listeners, WhoProcess{Container: &in, NAT: true})
	}
	if w.Allocation == nil && w.HeldElsewhere == nil && len(w.Listeners) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("nobody holds or listens on port %d", port)}
	}
	if o.json {
		return printJSON(o.g.stdout, w)
	}
	printWho(o.g.stdout, &w, ownerLive)
	return nil
}

// printWho prints who's answer for people.
func printWho(out io.Writer, w *Who, ownerLive probe.Liveness) {
	port := w.Port
	if a := w.Allocation; a != nil {
		fmt.Fprintf(out, "port %d: allocated to %s %s, %s\n", port, escape(a.Label()), sinceText(a.AllocatedAt), escape(a.HealthStatus))
		if c := a.Container; c != nil {
			in := c.Info()
			fmt.Fprintf(out, "  owner: %s, id %s, %s\n", escape(in.Describe()), in.Short(), containerPID(int(a.PID)))
		} else {
			fmt.Fprintf(out, "  owner: %s\n", ownerText(a, w.Owner, ownerLive))
		}
	} else if h := w.HeldElsewhere; h != nil {
		fmt.Fprintf(out, "port %d: allocated to %s in the host registry %s (skipped by allocate here)\n", port, escape(registry.Label(h.ServiceName, h.PortName)), escape(h.Registry))
		if h.PID > 0 {
			fmt.Fprintf(out, "  owner: pid %d\n", h.PID)
		}
	} else {
		fmt.Fprintf(out, "port %d: not allocated by gracectl\n", port)
	}
	for _, l := range w.Listeners {
		if l.NAT {
			fmt.Fprintf(out, "  published: %s, id %s, through NAT rules alone (no process listens)\n", escape(l.Container.Describe()), l.Container.Short())
			continue
		}
		if l.PID == 0 {
			fmt.Fprintf(out, "  listening: %s\n", portinfo.Unseen())
			continue
		}
		if l.Container != nil {
			fmt.Fprintf(out, "  listening: %s, id %s, through pid %d %s (user %s)\n", escape(l.Container.Describe()), l.Container.Short(),
				l.PID, escape(l.Command), orDash(escape(l.User)))
			continue
		}
		fmt.Fprintf(out, "  listening: pid %d %s (user %s)\n", l.PID, escape(l.Command), orDash(escape(l.User)))
	}
	if len(w.Listeners) == 0 {
		fmt.Fprintf(out, "  listening: nothing\n")
	}
}

// containerPID says what a container's owner PID is: its main process, or
// none while it is stopped.
func containerPID(pid int) string {
	if pid > 0 {
		return fmt.Sprintf("main pid %d", pid)
	}
	return "stopped (the port is kept for it)"
}

// whoProcess describes process pid (in this /proc's view).
func whoProcess(pid int) WhoProcess {
	return WhoProcess{PID: pid, Command: registry.SafeText(strings.Join(probe.Cmdline(pid), " "), 256), User: probe.ProcessUser(pid)}
}

// ownerText names an allocation's owner for `who`: the recorded PID and,
// when this view numbers the process differently (another PID namespace),
// the PID here; the command of the process found, else the recorded one.
func ownerText(a *registry.Allocation, found *WhoProcess, l probe.Liveness) string {
	switch {
	case a.PID <= 0:
		return "none yet (a reservation)"
	case found != nil:
		here := ""
		if found.PID != int(a.PID) {
			here = fmt.Sprintf(" (pid %d here, in PID namespace %d)", found.PID, a.PIDNS)
		}
		return fmt.Sprintf("pid %d%s %s (user %s)", a.PID, here, escape(found.Command), orDash(escape(found.User)))
	case l == probe.Unknown:
		return fmt.Sprintf("pid %d in PID namespace %d, which cannot be looked into from here; recorded command: %s", a.PID, a.PIDNS, orDash(escape(strings.Join(a.Command, " "))))
	}
	return fmt.Sprintf("pid %d, which is gone; recorded command: %s", a.PID, orDash(escape(strings.Join(a.Command, " "))))
}

// sinceText is "since T (D ago)", or "(allocation time unknown)" for an
// entry without allocated_at.
func sinceText(t registry.Time) string {
	if t.IsZero() {
		return "(allocation time unknown)"
	}
	return fmt.Sprintf("since %s (%s)", t, t.Ago(time.Now()))
}
