package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

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
	timeout           time.Duration
	flags             *pflag.FlagSet // the command's, to see if --fleet-timeout was given
}

const fleetFromEnv = "$GRACECTL_FLEET"

// addFleetFlags adds --fleet, its TLS flags and --fleet-timeout. For a
// command that reads the fleet, --fleet may stand alone (the endpoints then
// come from $GRACECTL_FLEET) or be --fleet=etcd://…; for watch it takes its
// value.
func addFleetFlags(f *pflag.FlagSet, g *globals, o *fleetFlags, what string, bare bool) {
	o.flags = f
	if bare {
		f.StringVar(&o.spec, "fleet", "", what+" (endpoints from $GRACECTL_FLEET, or --fleet=etcd://HOST:PORT[,HOST:PORT...])")
		f.Lookup("fleet").NoOptDefVal = fleetFromEnv
	} else {
		f.StringVar(&o.spec, "fleet", "", what+": etcd://HOST:PORT[,HOST:PORT...] (default $GRACECTL_FLEET)")
	}
	f.StringVar(&o.cacert, "fleet-cacert", "", "CA `FILE` of etcd's server certificate (etcd --trusted-ca-file)")
	f.StringVar(&o.cert, "fleet-cert", "", "client certificate `FILE` for etcd (--client-cert-auth)")
	f.StringVar(&o.key, "fleet-key", "", "the client certificate's key `FILE`")
	f.DurationVar(&o.timeout, "fleet-timeout", g.env.fleetTimeout, "how long a read of the fleet waits for etcd; $GRACECTL_FLEET_TIMEOUT sets the default")
}

func (o *fleetFlags) enabled() bool { return o.spec != "" }

// connect opens the etcd client.
func (o *fleetFlags) connect(g *globals) (*etcd.Client, error) {
	if err := g.env.envProblem("GRACECTL_FLEET_TIMEOUT", o.flags.Changed("fleet-timeout")); err != nil {
		return nil, err
	}
	if o.timeout <= 0 {
		return nil, usageErrorf("--fleet-timeout %s: must be positive", o.timeout)
	}
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

// readFleet reads the fleet view within --fleet-timeout, and says on stderr
// which keys it ignored. A fleet it cannot read is exit 7.
func readFleet(ctx context.Context, g *globals, o *fleetFlags) (*fleet.View, error) {
	cli, err := o.connect(g)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	start := time.Now()
	v, err := fleet.ReadWithin(ctx, cli, o.timeout)
	if err != nil {
		hint := "check that etcd runs at those addresses, and that gracectl may reach them"
		if time.Since(start) >= o.timeout {
			hint = "a member that accepts connections but does not answer is stopped or cut off from its cluster; or raise --fleet-timeout"
		}
		return nil, &exitError{code: exitFleet, err: err, hint: hint}
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(g.stderr, "gracectl: warning: %s\n", escape(w))
	}
	return v, nil
}

// writeFleetReport prints the seed's report for each host, under a
// "HOST <id> (<host name>)" heading, then the fleet's summary. The
// watchdog's section has the lines the host published, and no others.
func writeFleetReport(w io.Writer, v *fleet.View) error {
	for _, h := range v.Hosts {
		fmt.Fprintf(w, "HOST %s\n\n", escape(h.Host.Name()))
		st := &watchdog.Status{Registry: "etcd", Range: h.Host.Range, TotalPorts: h.Host.Range.Size(),
			Allocated: h.Allocated, Available: h.Available, Allocations: h.Allocations, Unmanaged: []watchdog.Unmanaged{}}
		if err := writeReport(w, st, fleetWatchdogLines(h.Host)); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	section(w, "FLEET")
	fmt.Fprintf(w, "Hosts: %d\nAllocated: %d\nAvailable: %d\nUnhealthy: %d\n", len(v.Hosts), v.Allocated, v.Available, v.Unhealthy)
	return nil
}

// fleetWatchdogLines are what a host's record says of its watchdog: it
// runs (it keeps the record's lease alive), and what it counted up to its
// last cycle, when it has had one.
func fleetWatchdogLines(h fleet.Host) []string {
	lines := []string{"Running: True"}
	if wd := h.Watchdog; wd != nil {
		lines = append(lines, "Check Interval: "+seconds(wd.IntervalSeconds),
			fmt.Sprintf("Checks Performed: %d", wd.ChecksPerformed), fmt.Sprintf("Issues Detected: %d", wd.IssuesDetected),
			fmt.Sprintf("Stale Cleaned: %d", wd.StaleCleaned), fmt.Sprintf("Monitored Ports: %d", wd.MonitoredPorts))
	}
	if !h.LastCycle.IsZero() {
		lines = append(lines, "Last Cycle: "+h.LastCycle.String())
	}
	return lines
}

// fleetPort prints HOST-ID:PORT lines for a service, what who --fleet takes.
func fleetPort(cmd *cobra.Command, g *globals, o *fleetFlags, service, portName string, asJSON bool) error {
	v, err := readFleet(cmd.Context(), g, o)
	if err != nil {
		return err
	}
	found := v.Services(service, portName)
	if len(found) == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("service %s holds no port on any host of the fleet", registry.Quote(service))}
	}
	if asJSON {
		return printJSON(g.stdout, found)
	}
	for _, f := range found {
		fmt.Fprintf(g.stdout, "%s:%d\n", f.HostID, f.Allocation.Port)
	}
	return nil
}

// fleetEnv is SERVICE_HOST, SERVICE_HOST_ID and SERVICE_PORT across the
// fleet, or on one host.
func fleetEnv(cmd *cobra.Command, g *globals, o *fleetFlags, services []string, host string) (map[string]any, error) {
	v, err := readFleet(cmd.Context(), g, o)
	if err != nil {
		return nil, err
	}
	vars, err := v.Env(services, host)
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err}
	}
	return vars, nil
}
