package cmd

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

// Lookup: which port is a service on (port, env), and who is on a port (who).

type portOptions struct {
	g     *globals
	name  string
	json  bool
	fleet fleetFlags
}

func newPortCmd(g *globals) *cobra.Command {
	o := &portOptions{g: g}
	c := &cobra.Command{
		Use:   "port SERVICE [--name PORTNAME]",
		Short: "Print the port(s) a service holds",
		Long: `Print the ports SERVICE holds, one per line, lowest first; with --name only
its port of that name. Exit 1, with a message on stderr, when it holds none.

With --fleet, one HOST-ID:PORT line per port the service holds on any host
of the fleet, by host id then port: what 'who --fleet' takes. --json adds
each host's name.` + exitHelp(fleetReaderExits, map[int]string{exitFailure: "the service holds no port (or the registry could not be read)"}),
		Example: `  curl "http://localhost:$(gracectl port grace_backend)/health"
  gracectl port grace_backend --name admin`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("port takes one service name, got %d arguments", len(args))
			}
			return runPort(cmd, o, args[0])
		},
	}
	c.Flags().StringVar(&o.name, "name", "", "only the port of this `PORTNAME`")
	addFleetFlags(c.Flags(), g, &o.fleet, "look on every host of the fleet (etcd) and print HOST-ID:PORT lines", true)
	c.Flags().BoolVar(&o.json, "json", false, "print the allocations as JSON")
	return c
}

func runPort(cmd *cobra.Command, o *portOptions, service string) error {
	if o.fleet.enabled() {
		return fleetPort(cmd, o.g, &o.fleet, service, o.name, o.json)
	}
	r, err := o.g.store().Read(cmd.Context())
	if err != nil {
		return err
	}
	held := r.OfService(service, o.name)
	if len(held) == 0 {
		what := fmt.Sprintf("service %q holds no port", service)
		if o.name != "" {
			what = fmt.Sprintf("service %q holds no port named %q", service, o.name)
		}
		return &exitError{code: exitFailure, err: fmt.Errorf("%s (gracectl status lists what is allocated)", what)}
	}
	if o.json {
		return printJSON(o.g.stdout, held)
	}
	for _, a := range held {
		fmt.Fprintln(o.g.stdout, a.Port)
	}
	return nil
}

type envOptions struct {
	g      *globals
	export bool
	json   bool
	fleet  fleetFlags
	host   string
}

func newEnvCmd(g *globals) *cobra.Command {
	o := &envOptions{g: g}
	c := &cobra.Command{
		Use:   "env [SERVICE...]",
		Short: "Print SERVICE_PORT=N lines for a shell or a .env file",
		Long: `Print a SERVICE_PORT=N line for every allocated service (or the ones named),
sorted by variable name: the service name, character by character, with
A-Z and 0-9 kept, other letters upper-cased without their accents (ü → U)
and anything else turned into _, then _PORT (a name starting with a digit
gets a leading _); a named port is SERVICE_PORTNAME_PORT. "grace-backend"
is GRACE_BACKEND_PORT, "café" CAFE_PORT, "ünï☃" UNI__PORT. A service holding
several ports under one name gets its lowest (the others are named on
stderr). --export prefixes "export "; --json prints one object, variable
name to value.

With --fleet, three lines per service from the fleet in etcd: SERVICE_HOST
(the name of the host it runs on, to connect to), SERVICE_HOST_ID (its host
id in the fleet) and SERVICE_PORT. A service that runs on several hosts is
refused, naming them (exit 1): give --host HOST-ID to take the variables of
that one host.` + exitHelp(fleetReaderExits, map[int]string{exitFailure: "a service named holds no port, or (--fleet) runs on several hosts without --host (or the registry could not be read)"}),
		Example: `  eval "$(gracectl env --export)"
  gracectl env grace_backend worker > .env
  gracectl env --json | jq .GRACE_BACKEND_PORT`,
		RunE: func(cmd *cobra.Command, args []string) error { return runEnv(cmd, o, args) },
	}
	c.Flags().BoolVar(&o.export, "export", false, `prefix every line with "export "`)
	c.Flags().BoolVar(&o.json, "json", false, "print one JSON object: variable name to value")
	addFleetFlags(c.Flags(), g, &o.fleet, "SERVICE_HOST, SERVICE_HOST_ID and SERVICE_PORT lines from the fleet (etcd)", true)
	c.Flags().StringVar(&o.host, "host", "", "with --fleet: the services of this one host (`HOST-ID`, or a host name no other host has)")
	return c
}

func runEnv(cmd *cobra.Command, o *envOptions, services []string) error {
	if o.export && o.json {
		return usageErrorf("--export is for shell lines; --json prints one object without it")
	}
	if o.host != "" && !o.fleet.enabled() {
		return usageErrorf("--host is for --fleet: without it, env reads this host's registry")
	}
	if o.fleet.enabled() {
		vars, err := fleetEnv(cmd, o.g, &o.fleet, services, o.host)
		if err != nil {
			return err
		}
		return printEnv(o, vars)
	}
	r, err := o.g.store().Read(cmd.Context())
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range services {
		if len(r.OfService(s, "")) == 0 {
			return &exitError{code: exitFailure, err: fmt.Errorf("service %s holds no port", registry.Quote(s))}
		}
		want[s] = true
	}
	vars := map[string]*registry.Allocation{}
	for _, a := range r.Sorted() { // by port: the lowest wins a name
		if len(want) > 0 && !want[a.ServiceName] {
			continue
		}
		name := registry.EnvName(a.ServiceName, a.PortName)
		if first, ok := vars[name]; ok {
			fmt.Fprintf(o.g.stderr, "gracectl: note: %s is port %d; %s also holds port %d\n", name, first.Port, escape(a.Label()), a.Port)
			continue
		}
		vars[name] = a
	}
	out := make(map[string]any, len(vars))
	for n, a := range vars {
		out[n] = a.Port
	}
	return printEnv(o, out)
}

// printEnv prints variables as NAME=VALUE lines sorted by name, or as one
// JSON object.
func printEnv(o *envOptions, vars map[string]any) error {
	if o.json {
		return printJSON(o.g.stdout, vars)
	}
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	prefix := ""
	if o.export {
		prefix = "export "
	}
	for _, n := range names {
		fmt.Fprintf(o.g.stdout, "%s%s=%v\n", prefix, n, vars[n])
	}
	return nil
}

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
	Owner     *Listener  `json:"owner,omitzero"`
	Listeners []Listener `json:"listeners"`
}

// Listener is a process listening on a port.
type Listener struct {
	PID     int    `json:"pid"`
	Command string `json:"command,omitzero"`
	User    string `json:"user,omitzero"`
	// Container is the container that publishes the port, when the
	// listener is its engine's proxy.
	Container *container.Info `json:"container,omitzero"`
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
			p, err := registry.ParsePort(args[0])
			if err != nil {
				return &usageError{msg: err.Error()}
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
	port, err := registry.ParsePort(portStr)
	if err != nil {
		return &usageError{msg: err.Error()}
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
	r, err := o.g.store().Read(cmd.Context())
	if err != nil {
		return err
	}
	w := Who{Port: port, Allocation: r.Get(port), Listeners: []Listener{}}
	var ownerLive probe.Liveness
	if a := w.Allocation; a != nil && a.PID > 0 {
		// The recorded PID is its own namespace's: the process is looked
		// up by its NSpid, never read from /proc/PID blindly.
		local, l := probe.Resolve(a.Owner())
		if ownerLive = l; l == probe.Running {
			p := listenerOf(local)
			w.Owner = &p
		}
	}
	snap := probe.TakeSnapshot()
	if snap.Listening(cmd.Context(), port) {
		lk := o.g.engines().Lookup()
		for _, pid := range snap.Owners(port) {
			l := listenerOf(pid)
			l.Container = lk.Publisher(cmd.Context(), port, pid)
			w.Listeners = append(w.Listeners, l)
		}
		if len(w.Listeners) == 0 {
			w.Listeners = append(w.Listeners, Listener{}) // listening, but not ours to see
		}
	}
	if w.Allocation == nil && len(w.Listeners) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("nobody holds or listens on port %d", port)}
	}
	if o.json {
		return printJSON(o.g.stdout, w)
	}
	out := o.g.stdout
	if a := w.Allocation; a != nil {
		fmt.Fprintf(out, "port %d: allocated to %s %s, %s\n", port, escape(a.Label()), sinceText(a.AllocatedAt), escape(a.HealthStatus))
		if c := a.Container; c != nil {
			in := c.Info()
			fmt.Fprintf(out, "  owner: %s, id %s, %s\n", escape(in.Describe()), in.Short(), containerPID(int(a.PID)))
		} else {
			fmt.Fprintf(out, "  owner: %s\n", ownerText(a, w.Owner, ownerLive))
		}
	} else {
		fmt.Fprintf(out, "port %d: not allocated by gracectl\n", port)
	}
	for _, l := range w.Listeners {
		if l.PID == 0 {
			fmt.Fprintf(out, "  listening: a process this user cannot see (run as root to name it)\n")
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
	return nil
}

// containerPID says what a container's owner PID is: its main process, or
// none while it is stopped.
func containerPID(pid int) string {
	if pid > 0 {
		return fmt.Sprintf("main pid %d", pid)
	}
	return "stopped (the port is kept for it)"
}

// listenerOf describes process pid (in this /proc's view).
func listenerOf(pid int) Listener {
	return Listener{PID: pid, Command: registry.SafeText(strings.Join(probe.Cmdline(pid), " "), 256), User: probe.ProcessUser(pid)}
}

// ownerText names an allocation's owner for `who`: the recorded PID and,
// when this view numbers the process differently (another PID namespace),
// the PID here; the command of the process found, else the recorded one.
func ownerText(a *registry.Allocation, found *Listener, l probe.Liveness) string {
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
