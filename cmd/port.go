package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

// portOptions are the flags of `gracectl port`: which port a service is on.
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
	if err := o.g.rootMissing(); err != nil {
		return err
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
