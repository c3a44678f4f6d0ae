package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The fleet: etcd endpoints from --fleet (or $GRACECTL_FLEET when --fleet
// is given bare), with etcd's client TLS.

type fleetFlags struct {
	spec              string
	cacert, cert, key string
}

const fleetFromEnv = "$GRACECTL_FLEET"

// addFleetFlags adds --fleet and its TLS flags. For a command that reads
// the fleet, --fleet may stand alone (the endpoints then come from
// $GRACECTL_FLEET) or be --fleet=etcd://…; for watch it takes its value.
func addFleetFlags(f *pflag.FlagSet, o *fleetFlags, what string, bare bool) {
	if bare {
		f.StringVar(&o.spec, "fleet", "", what+" (endpoints from $GRACECTL_FLEET, or --fleet=etcd://HOST:PORT[,HOST:PORT...])")
		f.Lookup("fleet").NoOptDefVal = fleetFromEnv
	} else {
		f.StringVar(&o.spec, "fleet", "", what+": etcd://HOST:PORT[,HOST:PORT...] (default $GRACECTL_FLEET)")
	}
	f.StringVar(&o.cacert, "fleet-cacert", "", "CA `FILE` of etcd's server certificate (etcd --trusted-ca-file)")
	f.StringVar(&o.cert, "fleet-cert", "", "client certificate `FILE` for etcd (--client-cert-auth)")
	f.StringVar(&o.key, "fleet-key", "", "the client certificate's key `FILE`")
}

func (o *fleetFlags) enabled() bool { return o.spec != "" }

// connect opens the etcd client.
func (o *fleetFlags) connect(g *globals) (*etcd.Client, error) {
	spec := o.spec
	if spec == fleetFromEnv {
		spec = g.env.fleet
		if spec == "" {
			return nil, usageErrorf("--fleet without endpoints needs $GRACECTL_FLEET (etcd://HOST:PORT[,...])")
		}
	}
	eps, err := fleet.ParseEndpoints(spec)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return fleet.Connect(fleet.Config{Endpoints: eps, CACert: o.cacert, Cert: o.cert, Key: o.key})
}

// readFleet reads the fleet view.
func readFleet(ctx context.Context, g *globals, o *fleetFlags) (*fleet.View, error) {
	cli, err := o.connect(g)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return fleet.Read(ctx, cli)
}

// writeFleetReport prints the seed's report for each host, under a
// "HOST <id>" heading, then the fleet's summary.
func writeFleetReport(w io.Writer, v *fleet.View) error {
	for _, h := range v.Hosts {
		fmt.Fprintf(w, "HOST %s (%s)\n\n", escape(h.Host.ID), escape(h.Host.Hostname))
		st := &watchdog.Status{Registry: "etcd", Range: h.Host.Range, TotalPorts: h.Host.Range.Size(),
			Allocated: h.Allocated, Available: h.Available, Allocations: h.Allocations, Unmanaged: []watchdog.Unmanaged{},
			Watchdog: &watchdog.State{Running: true, PID: h.Host.WatchdogPID, LastCycleAt: h.Host.LastCycle}}
		if err := writeStatusReport(w, st); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	section(w, "FLEET")
	fmt.Fprintf(w, "Hosts: %d\nAllocated: %d\nAvailable: %d\nUnhealthy: %d\n", len(v.Hosts), v.Allocated, v.Available, v.Unhealthy)
	return nil
}

// fleetPort prints host:port lines for a service.
func fleetPort(cmd *cobra.Command, g *globals, o *fleetFlags, service, portName string, asJSON bool) error {
	v, err := readFleet(cmd.Context(), g, o)
	if err != nil {
		return err
	}
	found := v.Services(service, portName)
	if len(found) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("service %q holds no port on any host of the fleet", service)}
	}
	if asJSON {
		return printJSON(g.stdout, found)
	}
	for _, f := range found {
		fmt.Fprintf(g.stdout, "%s:%d\n", f.Host, f.Allocation.Port)
	}
	return nil
}

// fleetEnv prints SERVICE_HOST and SERVICE_PORT lines across the fleet.
func fleetEnv(cmd *cobra.Command, g *globals, o *fleetFlags, services []string) (map[string]any, error) {
	v, err := readFleet(cmd.Context(), g, o)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	vars := map[string]any{}
	for _, h := range v.Hosts {
		for _, a := range h.Allocations {
			if len(want) > 0 && !want[a.ServiceName] {
				continue
			}
			base := strings.TrimSuffix(registry.EnvName(a.ServiceName, a.PortName), "_PORT")
			if _, seen := vars[base+"_PORT"]; seen {
				continue // the first host (by id) and lowest port wins
			}
			vars[base+"_HOST"], vars[base+"_PORT"] = h.Host.Hostname, a.Port
		}
	}
	return vars, nil
}
