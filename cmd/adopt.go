package cmd

import (
	"context"
	"fmt"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type adoptOptions struct {
	g       *globals
	port    int
	service string
	json    bool
}

func newAdoptCmd(g *globals) *cobra.Command {
	o := &adoptOptions{g: g}
	c := &cobra.Command{
		Use:   "adopt PORT [--service NAME]",
		Short: "Make a process already listening on a port of the range its owner",
		Long: `Turn an unmanaged listener (a process listening on a port of the managed range
without an allocation, which 'gracectl check' reports) into an allocation owned
by that process, recorded by PID and start time and logged as "adopt". The
service name defaults to one derived from its command line.

When the listener is a container engine's proxy (docker-proxy, conmon, ...),
the container that publishes the port is adopted: its main process is the
owner, its ID and name are recorded, the service name defaults to its name,
and the port is kept for it until the container is removed. So is a
container that publishes the port through its engine's NAT rules alone, with
no process listening on it.` + exitHelp(writerExits, nil),
		Example: `  gracectl check          # issue: port 8050: unmanaged listener: ... python3 serve.py
  gracectl adopt 8050 --service legacy_api`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := portArg("adopt", args)
			if err != nil {
				return err
			}
			o.port = p
			return runAdopt(cmd, o)
		},
	}
	c.Flags().StringVar(&o.service, "service", "", "service name (default: derived from the listener's command)")
	c.Flags().BoolVar(&o.json, "json", false, "print the allocation as JSON")
	return c
}

func runAdopt(cmd *cobra.Command, o *adoptOptions) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	if !rg.Contains(o.port) {
		return usageErrorf("port %d is outside the managed range %s", o.port, rg)
	}
	ctx, eng := cmd.Context(), o.g.engines()
	snap := probe.TakeSnapshot()
	var req registry.AdoptRequest
	if snap.Listening(ctx, o.port) {
		pids := snap.Owners(o.port)
		if len(pids) == 0 {
			return fmt.Errorf("port %d is in use, but its process cannot be seen (another user's: run as root)", o.port)
		}
		if req, err = adoptRequest(ctx, eng, o.port, pids); err != nil {
			return err
		}
	} else {
		// No listener: a container may still publish the port through
		// its engine's NAT rules alone.
		in, ok := eng.Lookup().Published(ctx)[o.port]
		if !ok {
			return fmt.Errorf("nothing listens on port %d", o.port)
		}
		st, err := eng.State(ctx, in, container.OwnUID())
		if err != nil || !st.Running {
			return fmt.Errorf("nothing listens on port %d (container %s, which published it, does not run now)", o.port, escape(in.Label()))
		}
		if req, err = adoptContainer(st, o.port, 0); err != nil {
			return err
		}
		req.NAT = true
	}
	if o.service != "" {
		req.Service = o.service
	}
	a, err := o.g.store().Adopt(cmd.Context(), req)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.g.stdout, a)
	}
	if c := a.Container; c != nil {
		in := c.Info()
		fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Port %d (%s) adopted: owned by %s, id %s, %s; kept until it is removed\n",
			a.Port, escape(a.ServiceName), escape(in.Describe()), in.Short(), containerPID(int(a.PID)))
		return nil
	}
	fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Port %d (%s) adopted: owned by pid %d\n", a.Port, escape(a.ServiceName), a.PID)
	return nil
}

// adoptRequest names the owner of a port that pids listen on: the
// container that publishes it, when the listener is a container engine's
// proxy (its main process, kept until the container is removed), else the
// first listener.
func adoptRequest(ctx context.Context, eng *container.Engines, port int, pids []int) (registry.AdoptRequest, error) {
	if st := publisherState(ctx, eng, port, pids[0]); st != nil {
		return adoptContainer(st, port, pids[0])
	}
	req := registry.AdoptRequest{Port: port}
	id, err := probe.IdentifyLocal(pids[0])
	if err != nil {
		return req, fmt.Errorf("pid %d, listening on port %d: %w", pids[0], port, err)
	}
	argv := probe.Cmdline(pids[0])
	req.Owner, req.Service, req.StartedBy, req.Command = id, registry.ServiceFromCommand(argv), registry.StartedBy(argv), argv
	return req, nil
}

// adoptContainer makes running container st the owner of port, kept
// until it is removed: its main process, or, where the engine's PIDs are
// not this host's, the proxy (listener pid) that stands for it, whose
// engine then says whether it runs.
func adoptContainer(st *container.State, port, proxy int) (registry.AdoptRequest, error) {
	req := registry.AdoptRequest{Port: port}
	owner, err := probe.IdentifyHere(st.PID)
	if err != nil {
		if proxy <= 0 {
			return req, fmt.Errorf("%s publishes port %d, but its main process cannot be seen from here (its engine runs in another PID namespace)", escape(st.Describe()), port)
		}
		if owner, err = probe.IdentifyLocal(proxy); err != nil {
			return req, fmt.Errorf("pid %d, listening on port %d: %w", proxy, port, err)
		}
	}
	req.Owner, req.Service, req.StartedBy = owner, registry.SafeText(st.Label(), registry.MaxServiceName), st.Engine
	req.Command, req.Container = probe.Cmdline(owner.PID), registry.NewContainer(st.Info, true)
	return req, nil
}

// publisherState is what the engine says of the running container that
// publishes port through listener pid, or nil.
func publisherState(ctx context.Context, eng *container.Engines, port, pid int) *container.State {
	in := eng.Lookup().Publisher(ctx, port, pid)
	if in == nil {
		return nil
	}
	uid, _ := probe.ProcessUID(pid)
	st, err := eng.State(ctx, *in, uid)
	if err != nil || !st.Running {
		return nil
	}
	return st
}
