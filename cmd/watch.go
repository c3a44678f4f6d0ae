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
	"github.com/gracectl/gracectl/cmd/routes"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type watchOptions struct {
	g          *globals
	checks     watchdog.Options // what each cycle checks, and how
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
	routes     routesFlags
}

// watchLong is the help of `gracectl watch`.
const watchLong = `Run the watchdog in the foreground: one cycle at once, then one every
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
docs/systemd/gracectl-watch.service.

--routes keeps a reverse proxy's routes in step with the registry:
SERVICE.DOMAIN (and PORTNAME.SERVICE.DOMAIN) to 127.0.0.1:PORT while the
service is active and its health check passes, a 503 while it is not, a
404 for other names under the domain. caddy://HOST:PORT edits gracectl's
own objects through Caddy's admin API; nginx:PATH writes an include file,
tests it (--routes-test) and reloads nginx (--routes-reload). A proxy that
cannot be reached at start is exit 6. See docs/routes.md.`

func newWatchCmd(g *globals) *cobra.Command {
	o := &watchOptions{g: g, journal: readEnv().journal}
	c := &cobra.Command{
		Use:   "watch",
		Short: "Run the watchdog in the foreground (every 30s)",
		Long:  watchLong + exitHelp([]int{exitOK, exitFailure, exitUsage, exitLocked, exitStartup}, nil),
		Example: `  gracectl watch
  gracectl watch --interval 10s --health-timeout 1s
  gracectl watch --routes caddy://127.0.0.1:2019
  gracectl watch --routes nginx:/etc/nginx/gracectl-routes.conf`,
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
			if err := o.validate(cmd); err != nil {
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
	f.StringArrayVar(&o.apiHosts, "api-host", nil, "a `NAME` the remote API is reached by, accepted in the Host header (repeatable; this host's name and the addresses of all its interfaces, IPv4 and IPv6, always are)")
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
	f.Var(&o.psLimits[2], "portserver-max-user-conns", "connections to the portserver one user may have open at once (default 256; 0: no limit)")
	addProbeFlags(f, &o.checks)
	addRoutesFlags(f, &o.routes)
	return c
}

// validate finds the usage mistakes of watch's flags, all before a
// running watchdog is looked for: a usage error is exit 2 whatever runs.
func (o *watchOptions) validate(cmd *cobra.Command) error {
	if o.interval < 100*time.Millisecond {
		return usageErrorf("--interval %s: must be at least 100ms", o.interval)
	}
	if o.heartbeat < 100*time.Millisecond {
		return usageErrorf("--event-heartbeat %s: must be at least 100ms", o.heartbeat)
	}
	if err := checkProbeFlags(&o.checks); err != nil {
		return err
	}
	if err := o.routes.check(cmd); err != nil {
		return err
	}
	if o.idle < 0 {
		return usageErrorf("--exit-when-idle %s: must not be negative", o.idle)
	}
	if o.hostID != "" {
		if _, err := fleet.HostID(o.hostID); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	// The API's address too (its syntax and web config).
	if o.api != "" {
		if err := api.Check(api.ListenConfig{Addr: o.api, AllowRemote: o.remote, WebConfig: o.webConfig}); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	return nil
}

func runWatch(cmd *cobra.Command, o *watchOptions) error {
	if o.stop {
		return stopWatchdog(cmd.Context(), o.g)
	}
	s, err := newWatchSession(o)
	if err != nil {
		return err
	}
	defer s.close()
	ctx := cmd.Context()
	fleetClient, err := s.startFleet(ctx)
	if err != nil {
		return err
	}
	psAddr, err := s.portserverAddress(cmd)
	if err != nil {
		return err
	}
	if o.api != "" || psAddr != "" || o.routes.spec != "" {
		// The API and the portserver are bound under the watchdog lock, so
		// a second watchdog is refused as such rather than failing on
		// their addresses; and a second one never touches the proxy.
		unlock, err := s.w.Lock()
		if err != nil {
			return startupError(err)
		}
		s.onClose(unlock)
	}
	if psAddr != "" {
		if err := s.startPortserver(psAddr); err != nil {
			return err
		}
	}
	if o.routes.spec != "" {
		if err := s.startRoutes(ctx); err != nil {
			return err
		}
	}
	if o.api != "" {
		if err := s.startAPI(ctx, fleetClient); err != nil {
			return err
		}
	}
	now, stopHUP := cycleOnSIGHUP()
	defer stopHUP()
	err = s.w.Run(ctx, now)
	var ar *watchdog.AlreadyRunningError
	if errors.As(err, &ar) {
		return startupError(err)
	}
	return err
}

// watchSession is one `gracectl watch`: the watchdog, what runs beside it
// (fleet publisher, portserver, API) and what stops them, in reverse order.
type watchSession struct {
	o        *watchOptions
	w        *watchdog.Watcher
	store    *registry.Store
	rg       registry.Range
	logf     func(string)
	hooks    []func(*watchdog.Report) // run after every cycle
	exitHook []func(*watchdog.Report) // run after each check of an owner that exited
	routes   *routes.Publisher        // --routes
	cleanups []func()
}

func newWatchSession(o *watchOptions) (*watchSession, error) {
	rg, err := o.g.watchedRange()
	if err != nil {
		return nil, err
	}
	s := &watchSession{o: o, store: o.g.store(), rg: rg, logf: watchLogger(o)}
	o.checks.Range = rg
	o.checks.Engines = o.g.engines()
	s.w = &watchdog.Watcher{Store: s.store, Options: o.checks, Interval: o.interval, Log: s.logf,
		ExitWhenIdle: o.idle}
	if o.fromRun {
		s.w.StartedBy = "run"
	}
	s.w.OnCycle = func(rep *watchdog.Report) {
		for _, h := range s.hooks {
			h(rep)
		}
	}
	s.w.OnExitCheck = func(rep *watchdog.Report) {
		for _, h := range s.exitHook {
			h(rep)
		}
	}
	return s, nil
}

// watchLogger writes the watchdog's log lines to stderr, one at a time,
// timestamped unless stderr is journald (which stamps them itself).
func watchLogger(o *watchOptions) func(string) {
	var mu sync.Mutex
	return func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if o.journal {
			fmt.Fprintln(o.g.stderr, escape(line))
		} else {
			fmt.Fprintf(o.g.stderr, "%s %s\n", time.Now().Format("2006-01-02T15:04:05.000Z07:00"), escape(line))
		}
	}
}

// onClose adds what close runs, last added first.
func (s *watchSession) onClose(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *watchSession) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// startFleet publishes this host to etcd when the fleet is on (a flag or
// $GRACECTL_FLEET) and returns the client the API's fleet view reads
// through; nil when the fleet is off.
func (s *watchSession) startFleet(ctx context.Context) (*etcd.Client, error) {
	o := s.o
	if o.fleet.spec == "" && o.g.env.fleet != "" {
		o.fleet.spec = fleetFromEnv
	}
	if !o.fleet.enabled() {
		return nil, nil
	}
	cli, err := o.fleet.connect(o.g)
	if err != nil {
		return nil, err
	}
	s.onClose(func() { cli.Close() })
	id, err := fleet.HostID(o.hostID)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	pub := &fleet.Publisher{Client: cli, Store: s.store, HostID: id, Range: s.rg,
		Version: versionString(), Interval: o.interval, Log: s.logf}
	s.hooks = append(s.hooks, func(rep *watchdog.Report) {
		st := s.w.State()
		pub.Cycle(rep.StartedAt, fleet.Watchdog{IntervalSeconds: st.IntervalSeconds, ChecksPerformed: st.ChecksPerformed,
			IssuesDetected: st.IssuesDetected, StaleCleaned: st.StaleCleaned, MonitoredPorts: st.MonitoredPorts})
	})
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.Run(pubCtx) }()
	// On the way out the host leaves the fleet at once (its lease is
	// revoked), not after the TTL.
	s.onClose(func() { stopPub(); <-pubDone })
	s.logf(fmt.Sprintf("[PORT-WATCHDOG] Fleet: publishing host %s to etcd (lease %s)", pub.HostID, pub.TTL()))
	return cli, nil
}

// portserverAddress is where --portserver asks to serve, resolved against
// the state root; "" without the flag.
func (s *watchSession) portserverAddress(cmd *cobra.Command) (string, error) {
	if !cmd.Flags().Changed("portserver") {
		return "", nil
	}
	addr, err := portserver.Resolve(s.o.portserver, s.store)
	var ae *portserver.AddressError
	switch {
	case errors.As(err, &ae):
		return "", &usageError{msg: err.Error()}
	case err != nil:
		return "", startupError(err)
	}
	return addr, nil
}

func (s *watchSession) startPortserver(addr string) error {
	stop, err := servePortserver(s.o, addr, s.store, s.rg, s.logf)
	if err != nil {
		return err
	}
	// On the way out: stop accepting, record what is pending, give back
	// the pool.
	s.onClose(stop)
	s.w.Portserver = addr
	return nil
}

// startRoutes checks that the --routes proxy can be changed (exit 6 if
// not) and keeps it in step: at once, at every registry change (within
// PickUpEvery), after each owner's exit and each cycle. On the way out the
// routes are withdrawn: nothing gates them then.
func (s *watchSession) startRoutes(ctx context.Context) error {
	pub, err := s.o.routes.publisher(ctx, s.store, s.logf)
	if err != nil {
		return startupError(err)
	}
	s.routes = pub
	s.w.Routes = &pub.Config
	kick := func(*watchdog.Report) { pub.Kick() }
	s.hooks = append(s.hooks, kick)
	s.exitHook = append(s.exitHook, kick)
	s.w.OnChange = pub.Kick
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.Run(pubCtx) }()
	s.onClose(func() { stopPub(); <-pubDone })
	s.logf(fmt.Sprintf("[PORT-WATCHDOG] Routes: keeping %s in step: SERVICE.%s on %s", pub.Proxy.Name(), pub.Config.Domain, pub.Config.Listen))
	return nil
}

func (s *watchSession) startAPI(ctx context.Context, fleetClient *etcd.Client) error {
	o := s.o
	l, err := api.Listen(ctx, api.ListenConfig{Addr: o.api, AllowRemote: o.remote, Store: s.store, Range: s.rg, Log: s.logf,
		WebConfig: o.webConfig, Hosts: o.apiHosts})
	var ae *api.AddrError
	switch {
	case errors.As(err, &ae):
		return &usageError{msg: err.Error()}
	case err != nil:
		return startupError(err)
	}
	s.onClose(func() { l.Close() })
	s.w.API = l.Addr().Network() + ":" + l.Addr().String()
	s.w.APIAccess = l.Access.String()
	srv := api.New(s.store, s.w, s.rg, l.Hosts, api.Build{Version: versionString(), Revision: vcsRevision()})
	srv.Fleet, srv.FleetTimeout = fleetClient, o.fleet.timeout
	srv.Heartbeat = o.heartbeat
	s.hooks = append(s.hooks, srv.ObserveCycle)
	s.exitHook = append(s.exitHook, srv.ObserveExitCheck)
	s.w.OnCycleError = srv.ObserveCycleError
	if s.routes != nil {
		srv.Routes = &s.routes.Config
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	s.onClose(stopFollowing)
	go srv.FollowChanges(followCtx)
	s.onClose(api.Serve(l, srv, s.logf))
	return nil
}

// cycleOnSIGHUP turns SIGHUP into a request for a cycle now; one that
// arrives during a cycle is kept for after it.
func cycleOnSIGHUP() (now <-chan struct{}, stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ch := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { signal.Stop(hup) }
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
	status := "STATUS=cannot start: " + oneLine(registry.PlainText(err))
	if errno := errnoOf(err); errno != 0 {
		status += "\nERRNO=" + strconv.Itoa(errno)
	}
	_, _ = daemon.SdNotify(false, status)
	ee := &exitError{code: exitStartup, err: err}
	var ar *watchdog.AlreadyRunningError
	if errors.As(err, &ar) {
		ee.hint = ar.Hint()
	}
	return ee
}

func errnoOf(err error) int {
	var e syscall.Errno
	if errors.As(err, &e) {
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
