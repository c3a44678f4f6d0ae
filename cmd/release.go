package cmd

import (
	"fmt"
	"os"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type releaseOptions struct {
	g       *globals
	port    int
	service string
	force   bool
	reason  string
	json    bool
}

func newReleaseCmd(g *globals) *cobra.Command {
	o := &releaseOptions{g: g}
	c := &cobra.Command{
		Use:   "release PORT | --service NAME",
		Short: "Release a port, or every port of a service",
		Long: `Release a port and log it with its duration and request/error counts.

A port whose owner is still running, and is not the caller (gracectl's parent
or one of its ancestors), is only released with --force.` + exitHelp(writerExits, nil),
		Example: `  gracectl release 8000
  gracectl release --service grace_backend --reason "deploy"
  gracectl release 8001 --force`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usageErrorf("release takes one port, got %d arguments", len(args))
			case len(args) == 1 && o.service != "":
				return usageErrorf("give a port or --service, not both")
			case len(args) == 0 && o.service == "":
				return usageErrorf("give a port to release, or --service NAME")
			case len(args) == 1:
				p, err := parsePortArg(args[0])
				if err != nil {
					return err
				}
				o.port = p
			}
			return runRelease(cmd, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.service, "service", "", "release every port held by this service")
	f.BoolVar(&o.force, "force", false, "release even if the owner is still running")
	f.StringVar(&o.reason, "reason", "released by user", "why, for the audit log")
	f.BoolVar(&o.json, "json", false, "print the released allocations as JSON")
	return c
}

func runRelease(cmd *cobra.Command, o *releaseOptions) error {
	if err := registry.CheckText("reason", o.reason, registry.MaxPurpose); err != nil {
		return &usageError{msg: err.Error()}
	}
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	released, err := o.g.store().Release(cmd.Context(), registry.ReleaseRequest{
		Port: o.port, Service: o.service, Force: o.force,
		Callers: append([]int{os.Getpid()}, probe.Ancestors(os.Getpid())...),
		By:      "cli", ByUser: userName(os.Getuid()), Reason: o.reason,
	})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(o.g.stdout, released)
	}
	for _, a := range released {
		fmt.Fprintf(o.g.stderr, "[PORT-MANAGER] Released port %d (%s)\n", a.Port, escape(a.ServiceName))
	}
	return nil
}
