package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/gracectl/gracectl/cmd/api"
	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/cmd/portserver"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type watchOptions struct {
	g          *globals
	probe      watchdog.Options
	interval   time.Duration
	journal    bool
	api        string
	remote     bool
	webConfig  string
	apiHosts   []string
	heartbeat  time.Duration
	portserver string
	psLimits   [3]limitFlag // per user ports, per client ports, per user connections
	idle       time.Duration
	fromRun    bool
	stop       bool
	fleet      fleetFlags
	hostID     string
}

func newWatchCmd(g *globals) *cobra.Command {
	o := &watchOptions{g: g, journal: readEnv().journal}
	c := &cobra.Command{
		Use:   "watch",
		Short: "Run the watchdog in the foreground (every 30s)",
		Long: `Run the watchdog in the foreground: one cycle at once, then one every
--interval. Each cycle probes every allocation (see 'gracectl check'), records
health statuses and request/error counts, and releases the ports of dead
services and stale reservations. Log lines go to stderr, timestamped unless
stderr is journald ($JOURNAL_STREAM).

There is at most one watchdog per registry: a second exits at once (6) naming
the first. 'gracectl watch --stop' stops the running one and waits for it to
exit: the process the kernel says holds the watchdog lock, if it is a gracectl
watch (never a PID read from a file); with none running it says so and exits
0. SIGTERM and SIGINT stop it; SIGHUP runs a cycle now. Under systemd
(Type=notify) it sends READY=1 after the first cycle, STATUS= after each,
WATCHDOG=1 when WatchdogSec= is set, and STOPPING=1 on shutdown. See
docs/systemd/gracectl-watch.service.` + exitHelp([]int{exitOK, exitFailure, exitUsage, exitLocked, exitStartup}, nil),
		Example: `  gracectl watch
  gracectl watch --interval 10s --health-timeout 1s`,
		Args: func(cmd *cobra.Command, args []string) error {
			// watch takes no arguments, so one after a bare --portserver is
			// its address: --portserver ADDRESS as well as --portserver=ADDRESS.
			if len(args) == 1 && cmd.Flags().Changed("portserver") && o.portserver == portserver.DefaultAddress {
				o.portserver = args[0]
				return nil
			}
			return noArgs(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.interval < 100*time.Millisecond {
				return usageErrorf("--interval must be at least 100ms, got %s", o.interval)
			}
			if o.heartbeat < 100*time.Millisecond {
				return usageErrorf("--event-heartbeat must be at least 100ms, got %s", o.heartbeat)
			}
			if err := checkProbeFlags(&o.probe); err != nil {
				return err
			}
			return runWatch(cmd, o)
		},
	}
	f := c.Flags()
	f.DurationVar(&o.interval, "interval", watchdog.DefaultInterval, "time between cycles")
	f.StringVar(&o.api, "api", "", "serve the HTTP API on HOST:PORT (default host 127.0.0.1) or unix:/path")
	f.BoolVar(&o.remote, "api-allow-remote", false, "allow --api to listen beyond loopback (give --api-web-config with TLS and authentication too)")
	f.StringVar(&o.webConfig, "api-web-config", "", "serve the API with TLS and authentication: a Prometheus exporter web config `FILE` (tls_server_config, basic_auth_users; docs/security.md)")
	f.StringArrayVar(&o.apiHosts, "api-host", nil, "a `NAME` the remote API is reached by, accepted in the Host header (repeatable; this host's name and address always are)")
	f.DurationVar(&o.heartbeat, "event-heartbeat", api.EventHeartbeat, "time between the API's event stream heartbeats; a local client that reads nothing for one is dropped")
	addFleetFlags(f, g, &o.fleet, "publish this host's allocations to etcd for the fleet view ($GRACECTL_FLEET)", false)
	f.StringVar(&o.hostID, "host-id", "", "this host's `ID` in the fleet: 1 to 64 letters, digits, '.', '_' and '-' (default: /etc/machine-id, else the host name)")
	f.DurationVar(&o.idle, "exit-when-idle", 0, "exit once the registry has held no allocation this long (0: never)")
	f.BoolVar(&o.fromRun, "from-run", false, "record that gracectl run started this watchdog")
	_ = f.MarkHidden("from-run")
	f.BoolVar(&o.stop, "stop", false, "stop the registry's running watchdog (whoever started it) and wait for it to exit; none running is no error")
	f.StringVar(&o.portserver, "portserver", "", "serve portpicker's portserver protocol; point PORTSERVER_ADDRESS at it. Alone: on the socket "+
		"run/"+portserver.SocketName+" of the state root, which no other user can take; or on `ADDRESS`, a path in a folder only you can write, or @name in the abstract namespace (which any user can take first: docs/security.md)")
	f.Lookup("portserver").NoOptDefVal = portserver.DefaultAddress
	f.Var(&o.psLimits[0], "portserver-max-user-ports", "ports the portserver's clients of one user may hold at once (default: half the range; 0: no limit)")
	f.Var(&o.psLimits[1], "portserver-max-client-ports", "ports one portserver client process may hold at once (default: half the range; 0: no limit)")
	f.Var(&o.psLimits[2], "portserver-max-user-conns", "connections to the portserver one user may have open at once (default 64; 0: no limit)")
	addProbeFlags(f, &o.probe)
	return c
}

func runWatch(cmd *cobra.Command, o *watchOptions) error {
	if o.stop {
		return stopWatchdog(cmd.Context(), o.g)
	}
	rg, err := o.g.watchedRange()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	logf := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if o.journal {
			fmt.Fprintln(o.g.stderr, escape(line))
		} else {
			fmt.Fprintf(o.g.stderr, "%s %s\n", time.Now().Format("2006-01-02T15:04:05.000Z07:00"), escape(line))
		}
	}
	store := o.g.store()
	o.probe.Range = rg
	o.probe.Engines = o.g.engines()
	w := &watchdog.Watcher{Store: store, Options: o.probe, Interval: o.interval, Range: rg, Log: logf,
		ExitWhenIdle: o.idle}
	if o.fromRun {
		w.StartedBy = "run"
	}
	var hooks []func(*watchdog.Report)
	w.OnCycle = func(rep *watchdog.Report) {
		for _, h := range hooks {
			h(rep)
		}
	}
	if o.fleet.spec == "" && o.g.env.fleet != "" {
		o.fleet.spec = fleetFromEnv
	}
	var fleetClient *etcd.Client
	if o.fleet.enabled() {
		cli, err := o.fleet.connect(o.g)
		if err != nil {
			return err
		}
		defer cli.Close()
		fleetClient = cli
		id, err := fleet.HostID(o.hostID)
		if err != nil {
			return &usageError{msg: err.Error()}
		}
		pub := &fleet.Publisher{Client: cli, Store: store, HostID: id, Range: rg,
			Version: versionString(), Interval: o.interval, Log: logf}
		hooks = append(hooks, func(rep *watchdog.Report) {
			st := w.State()
			pub.Cycle(rep.StartedAt, fleet.Watchdog{IntervalSeconds: st.IntervalSeconds, ChecksPerformed: st.ChecksPerformed,
				IssuesDetected: st.IssuesDetected, StaleCleaned: st.StaleCleaned, MonitoredPorts: st.MonitoredPorts})
		})
		pubCtx, stopPub := context.WithCancel(cmd.Context())
		pubDone := make(chan struct{})
		go func() { defer close(pubDone); pub.Run(pubCtx) }()
		// On the way out the host leaves the fleet at once (its lease is
		// revoked), not after the TTL.
		defer func() { stopPub(); <-pubDone }()
		logf(fmt.Sprintf("[PORT-WATCHDOG] Fleet: publishing host %s to etcd (lease %s)", pub.HostID, pub.TTL()))
	}
	psAddr := ""
	if cmd.Flags().Changed("portserver") {
		if psAddr, err = portserver.Resolve(o.portserver, store); err != nil {
			var ae *portserver.AddressError
			if errors.As(err, &ae) {
				return &usageError{msg: err.Error()}
			}
			return startupError(err)
		}
	}
	if o.api != "" || psAddr != "" {
		// The API and the portserver are bound under the watchdog lock, so
		// a second watchdog is refused as such rather than failing on
		// their addresses.
		unlock, err := w.Lock()
		if err != nil {
			return startupError(err)
		}
		defer unlock()
	}
	if psAddr != "" {
		stop, err := servePortserver(o, psAddr, store, rg, logf)
		if err != nil {
			return err
		}
		// On the way out: stop accepting, record what is pending, give
		// back the pool.
		defer stop()
		w.Portserver = psAddr
	}
	if o.api != "" {
		l, err := api.Listen(cmd.Context(), api.ListenConfig{Addr: o.api, AllowRemote: o.remote, Store: store, Range: rg, Log: logf,
			WebConfig: o.webConfig, Hosts: o.apiHosts})
		var ae *api.AddrError
		if errors.As(err, &ae) {
			return &usageError{msg: err.Error()}
		}
		if err != nil {
			return startupError(err)
		}
		defer l.Close()
		w.API = l.Addr().Network() + ":" + l.Addr().String()
		w.APIAccess = l.Access.String()
		srv := api.New(store, w, rg, l.Hosts, api.Build{Version: versionString(), Revision: vcsRevision()})
		srv.Fleet, srv.FleetTimeout = fleetClient, o.fleet.timeout
		srv.Heartbeat = o.heartbeat
		hooks = append(hooks, srv.ObserveCycle)
		w.OnCycleError, w.OnExitCheck = srv.ObserveCycleError, srv.ObserveExitCheck
		followCtx, stopFollowing := context.WithCancel(cmd.Context())
		defer stopFollowing()
		go srv.FollowChanges(followCtx)
		defer api.Serve(l, srv, logf)()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	now := make(chan struct{}, 1) // a SIGHUP during a cycle is kept for after it
	go func() {
		for range hup {
			select {
			case now <- struct{}{}:
			default:
			}
		}
	}()
	err = w.Run(cmd.Context(), now)
	var ar *watchdog.AlreadyRunningError
	if asErr(err, &ar) {
		return startupError(err)
	}
	return err
}

// servePortserver starts the portserver on addr and returns what stops it.
func servePortserver(o *watchOptions, addr string, store *registry.Store, rg registry.Range, logf func(string)) (stop func(), err error) {
	l, err := portserver.Listen(addr)
	if err != nil {
		se := startupError(err)
		var inUse *portserver.InUseError
		if errors.As(err, &inUse) && inUse.Abstract {
			se.hint = "serve on the default socket instead, which no other user can take: --portserver alone"
		}
		return nil, se
	}
	lim := portserver.DefaultLimits(rg)
	for i, n := range []*int{&lim.UserPorts, &lim.ClientPorts, &lim.UserConns} {
		if o.psLimits[i].set {
			*n = o.psLimits[i].n
		}
	}
	ps := &portserver.Server{Store: store, Range: rg, Limits: lim, Log: logf}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := ps.Serve(l); err != nil {
			logf("[PORT-WATCHDOG] Portserver stopped: " + err.Error())
		}
	}()
	if strings.HasPrefix(addr, "@") {
		logf("[PORT-WATCHDOG] WARNING: the portserver's abstract address " + addr + " can be taken by any local user whenever it is free; " +
			"--portserver alone serves a socket in the state root that no other user can take (docs/security.md)")
	}
	logf(fmt.Sprintf("[PORT-WATCHDOG] Portserver listening on %s (PORTSERVER_ADDRESS=%s; per user at most %s ports and %s connections, per client %s ports)",
		addr, addr, limitText(lim.UserPorts), limitText(lim.UserConns), limitText(lim.ClientPorts)))
	return func() { l.Close(); <-served }, nil
}

// limitFlag is a limit flag: unset ("" in the help) until given; 0 is no
// limit.
type limitFlag struct {
	n   int
	set bool
}

func (l *limitFlag) String() string {
	if !l.set {
		return ""
	}
	return strconv.Itoa(l.n)
}

func (l *limitFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return errors.New(l.Expects())
	}
	l.n, l.set = n, true
	return nil
}

func (l *limitFlag) Type() string { return "N" }

// Expects says what the flag takes, for the message about a bad value.
func (l *limitFlag) Expects() string { return "a whole number, 0 or more (0: no limit)" }

func limitText(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// startupError is a watchdog that cannot start: exit 6, which the unit's
// RestartPreventExitStatus= keeps systemd from retrying, after telling
// systemd why (STATUS=, ERRNO=).
func startupError(err error) *exitError {
	status := "STATUS=cannot start: " + oneLine(err.Error())
	if errno := errnoOf(err); errno != 0 {
		status += "\nERRNO=" + strconv.Itoa(errno)
	}
	_, _ = daemon.SdNotify(false, status)
	ee := &exitError{code: exitStartup, err: err}
	var ar *watchdog.AlreadyRunningError
	if asErr(err, &ar) {
		ee.hint = ar.Hint()
	}
	return ee
}

func errnoOf(err error) int {
	var e syscall.Errno
	if asErr(err, &e) {
		return int(e)
	}
	return 0
}

// stopWatchdog is `watch --stop`: SIGTERM to the registry's running
// watchdog, as the kernel names it (the process holding the watchdog lock,
// a gracectl watch), then wait until it has exited. None running is no
// failure: there is nothing to stop.
func stopWatchdog(ctx context.Context, g *globals) error {
	store := g.store()
	id, err := watchdog.Stop(ctx, store, 30*time.Second)
	if errors.Is(err, watchdog.ErrNotRunning) {
		fmt.Fprintf(g.stderr, "gracectl: no watchdog is running for %s; nothing to stop\n", escape(store.Path()))
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "gracectl: stopped the watchdog (pid %d)\n", id.PID)
	return nil
}
