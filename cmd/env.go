package cmd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// envOptions are the flags of `gracectl env`: the ports of services as
// environment variables.
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
name to value. While a watchdog keeps routes ('watch --routes'), each
service with a name in the proxy also gets SERVICE_URL (SERVICE_PORTNAME_URL),
its URL there ('gracectl routes').

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
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	r, err := o.g.store().Read(cmd.Context())
	if err != nil {
		return err
	}
	vars, shadowed, err := r.EnvPorts(services)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	for _, sh := range shadowed {
		fmt.Fprintf(o.g.stderr, "gracectl: note: %s is port %d; %s also holds port %d\n", sh.Name, sh.Kept.Port, escape(sh.Lost.Label()), sh.Lost.Port)
	}
	out := make(map[string]any, len(vars))
	for n, a := range vars {
		out[n] = a.Port
	}
	// With a watchdog keeping routes, SERVICE_URL beside SERVICE_PORT.
	if t, err := routesTable(o.g, r); err == nil && t != nil {
		for n, a := range vars {
			if u := t.URLOf(a.Port); u != "" {
				out[strings.TrimSuffix(n, "_PORT")+"_URL"] = u
			}
		}
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
