package cmd

import (
	"fmt"

	"github.com/gracectl/gracectl/probe"
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
service name defaults to one derived from its command line.` + exitHelp(writerExits, nil),
		Example: `  gracectl check          # issue: port 8050: unmanaged listener: ... python3 serve.py
  gracectl adopt 8050 --service legacy_api`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("adopt takes one port, got %d arguments", len(args))
			}
			p, err := registry.ParsePort(args[0])
			if err != nil {
				return &usageError{msg: err.Error()}
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
	snap := probe.TakeSnapshot()
	if !snap.Listening(cmd.Context(), o.port) {
		return fmt.Errorf("nothing listens on port %d", o.port)
	}
	pids := snap.Owners(o.port)
	if len(pids) == 0 {
		return fmt.Errorf("port %d is in use, but its process cannot be seen (another user's: run as root)", o.port)
	}
	id, err := probe.Identify(pids[0])
	if err != nil {
		return fmt.Errorf("pid %d, listening on port %d: %w", pids[0], o.port, err)
	}
	argv := probe.Cmdline(id.PID)
	service := o.service
	if service == "" {
		service = registry.ServiceFromCommand(argv)
	}
	a, err := o.g.store().Adopt(cmd.Context(), registry.AdoptRequest{Port: o.port, Owner: id, Service: service,
		StartedBy: registry.StartedBy(argv), Command: argv})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.g.stdout, a)
	}
	fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Port %d (%s) adopted: owned by pid %d\n", a.Port, escape(a.ServiceName), a.PID)
	return nil
}
