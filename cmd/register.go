package cmd

import (
	"fmt"

	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type registerOptions struct {
	g       *globals
	port    int
	pid     int
	service string
	id      string
	force   bool
	json    bool
}

func newRegisterCmd(g *globals) *cobra.Command {
	o := &registerOptions{g: g}
	c := &cobra.Command{
		Use:   "register PORT --pid N (--service NAME | --id ALLOCATION_ID)",
		Short: "Bind an allocation to the process that owns it",
		Long: `Bind an allocation (typically a reservation made by 'allocate' without --pid)
to its owner. The owner is recorded by PID and start time, so a later process
that reuses the PID is never taken for it.

The claim names the allocation it is for: --service NAME (the allocation must
be that service's) or --id ALLOCATION_ID (allocate --json prints it). An
allocation that is not the one named (a wrong name or ID, or a port that
changed hands since it was allocated to you: your reservation ran out and
another service got the port) is refused, as is an owner that is still
running; --force does both anyway, and the audit log says so.` + exitHelp(writerExits, nil),
		Example: `  PORT=$(gracectl allocate --service api)
  PORT="$PORT" python3 docs/examples/serve.py & gracectl register "$PORT" --pid $! --service api`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := portArg("register", args)
			if err != nil {
				return err
			}
			o.port = p
			if !cmd.Flags().Changed("pid") {
				return usageErrorf("--pid is required")
			}
			if o.service == "" && o.id == "" {
				return usageErrorf("say which allocation you claim: --service NAME or --id ALLOCATION_ID (a port may have changed hands since you got it)")
			}
			return runRegister(cmd, o)
		},
	}
	c.Flags().IntVar(&o.pid, "pid", 0, "PID of the owner (required)")
	c.Flags().StringVar(&o.service, "service", "", "the service the allocation belongs to")
	c.Flags().StringVar(&o.id, "id", "", "the `ALLOCATION_ID` claimed (allocate --json prints allocation_id)")
	c.Flags().BoolVar(&o.force, "force", false, "replace an owner that is still running, or take a port that changed hands")
	c.Flags().BoolVar(&o.json, "json", false, "print the allocation as JSON")
	return c
}

func runRegister(cmd *cobra.Command, o *registerOptions) error {
	id, err := identify(o.pid)
	if err != nil {
		return err
	}
	a, err := o.g.store().Register(cmd.Context(), registry.Claim{Port: o.port, Owner: id, Service: o.service, ID: o.id,
		Reason: "registered by user", Force: o.force, TakeOver: o.force})
	if err != nil {
		return requestError(err)
	}
	if o.json {
		return printJSON(o.g.stdout, a)
	}
	fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Port %d (%s) registered to pid %d\n", a.Port, escape(a.ServiceName), a.PID)
	return nil
}
