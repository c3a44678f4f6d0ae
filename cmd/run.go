package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/gracectl/gracectl/cmd/runner"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

type runOptions struct {
	g          *globals
	service    string
	purpose    string
	startedBy  string
	preferred  int
	healthPath string
	envName    string
	listenFD   bool
	quiet      bool
	noWait     bool
	noWatchdog bool
	ports      []string
	argv       []string
}

const trampolineName = "__exec-listen"

// runLong is the help of `gracectl run`.
const runLong = `Allocate a port, start COMMAND with it, register the command's PID as the
port's owner, and release the port when the command exits.

The port reaches the command as $PORT (or the variable --env names) and
$GRACECTL_PORT, and every {port} in its arguments is replaced by it. With
--port NAME (repeatable) the service gets one port per name, all or none:
each in $PORT_NAME and {port.NAME}, the first also in $PORT and {port}; all
are owned by the command and released when it ends. A {port.NAME} whose NAME
no --port gives is a usage error. With
--listen-fd gracectl binds the port itself and passes the listening socket as
fd 3 (systemd socket activation: LISTEN_FDS=1, LISTEN_PID), so nothing can take
the port between allocation and bind.

SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the
command; the stopping ones reach its whole process group. If gracectl is
killed outright, the command gets SIGTERM (Linux).

A command that daemonizes (forks, setsid, exits) does not lose its port: on
Linux gracectl is the child subreaper of everything the command starts, so
when the command exits while processes it started live on, gracectl stays,
makes the one listening on the port (or, before any listens, the oldest) the
port's owner, forwards signals to them, and exits with the command's status
once the last has ended; the port is released then.

When no watchdog runs for the registry, run starts one in the background, as
the seed's serve.py does: 'gracectl watch' in its own session, its log in
logs/port_manager/watchdog.log, exiting by itself once the registry has held
no allocation for 10 minutes ($GRACECTL_WATCHDOG_IDLE). A watchdog already
running (under systemd, or by hand) is used as it is. --no-watchdog, or
$GRACECTL_WATCHDOG=off, starts none. --no-wait-descendants
exits with the command instead. If the port still listens after that, it is
not released: its listener is tracked instead.

A container run ('docker run', 'podman run', as in
'gracectl run -- docker run --rm -p 127.0.0.1:{port}:80 IMAGE') is given a
--cidfile, and once the container exists it owns the port: its main process,
with its ID and name (the engine is asked on its API socket). A stopping
signal stops it as 'docker stop' does (its stop signal, then its stop
timeout), and the port is released once the engine no longer publishes it.
When the client exits and the container runs on ('docker run -d'), the port
stays the container's until the container is removed. The service name
defaults to the container's --name.

EXIT STATUS
  the command's exit status, or 128+N if it died of signal N
  126  the command is not executable
  127  the command was not found
  1, 2, 3, 4 as for every command, when no command was started`

func newRunCmd(g *globals) *cobra.Command {
	o := &runOptions{g: g}
	c := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Run a service on a managed port and release the port when it ends",
		Long:  runLong,
		Example: `  gracectl run --service grace_backend --purpose "Main Grace API server" -- python serve.py
  gracectl run -- python3 -m http.server {port}
  gracectl run --health-path / -- docker run --rm --name web -p 127.0.0.1:{port}:80 nginx
  gracectl run --listen-fd --health-path /health -- python3 docs/examples/serve.py`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Flags end at the command (SetInterspersed(false)), so both
			// `run -- python serve.py` and `run python serve.py` work.
			if len(args) == 0 {
				return usageErrorf("no command given: gracectl run [flags] -- COMMAND [ARGS...]")
			}
			o.argv = args
			if o.service == "" {
				o.service = registry.ServiceFromCommand(args)
			}
			if !cmd.Flags().Changed("started-by") {
				o.startedBy = registry.SafeText(registry.StartedBy(args), registry.MaxStartedBy)
			}
			return runRun(cmd, o)
		},
	}
	f := c.Flags()
	f.SetInterspersed(false)
	f.StringVar(&o.service, "service", "", "service `NAME` (default: derived from the command: python serve.py → serve)")
	f.StringVar(&o.purpose, "purpose", "", "why the service needs the port")
	f.StringVar(&o.startedBy, "started-by", "", "what started the service (default: the script or program run)")
	f.IntVar(&o.preferred, "preferred", 0, "port to try first (default, or 0: the port the service held last, else the range start)")
	f.StringVar(&o.healthPath, "health-path", "", "HTTP path the watchdog checks, e.g. /health")
	f.StringVar(&o.envName, "env", "PORT", "environment variable that receives the port")
	f.BoolVar(&o.listenFD, "listen-fd", false, "bind the port in gracectl and pass the socket as fd 3 (LISTEN_FDS)")
	f.StringArrayVar(&o.ports, "port", nil, "a named port for the service (repeat for several: --port http --port admin); each in $PORT_NAME and {port.NAME}, the first also in $PORT")
	f.BoolVar(&o.noWatchdog, "no-watchdog", false, "do not start a watchdog when none runs ($GRACECTL_WATCHDOG=off)")
	f.BoolVar(&o.noWait, "no-wait-descendants", false, "exit when the command exits, even if processes it started live on (they keep the port only while they listen)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print none of gracectl's own progress and notices (the allocation banner, the release line, notes, a watchdog or registry created); warnings and errors are still printed on stderr")
	return c
}

// checkPortPlaceholders refuses a {port.NAME} in the command whose NAME
// no --port gives: it would reach the command as written, not as a port.
func (o *runOptions) checkPortPlaceholders() error {
	for _, a := range o.argv {
		for rest := a; ; {
			_, after, ok := strings.Cut(rest, "{port.")
			if !ok {
				break
			}
			name, tail, closed := strings.Cut(after, "}")
			if closed && !slices.Contains(o.ports, name) {
				given := "no --port was given"
				if len(o.ports) > 0 {
					given = "the --port names are " + strings.Join(o.ports, ", ")
				}
				return usageErrorf("the command names {port.%s}, but %s", escape(name), given)
			}
			rest = tail
		}
	}
	return nil
}

func runRun(cmd *cobra.Command, o *runOptions) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	if !validEnvName(o.envName) {
		return usageErrorf("--env %s is not a valid environment variable name", registry.Quote(o.envName))
	}
	if err := o.checkPortPlaceholders(); err != nil {
		return err
	}
	watch := !o.noWatchdog && !o.g.env.noWatchdog
	if err := o.g.env.envProblem("GRACECTL_WATCHDOG", o.noWatchdog); err != nil {
		return err
	}
	if err := o.g.env.envProblem("GRACECTL_WATCHDOG_IDLE", !watch); err != nil {
		return err
	}
	store := o.g.store()
	if o.quiet {
		store.Notice = nil // "created registry ...": information, not a warning
	} else if !cmd.Flags().Changed("service") {
		noteSameName(cmd.Context(), o.g, o.service)
	}
	cfg := runner.Config{
		Store: store,
		Request: registry.Request{
			Service: o.service, Purpose: o.purpose, StartedBy: o.startedBy,
			Preferred: o.preferred, Range: rg, HealthPath: o.healthPath, PortNames: o.ports,
		},
		Argv: o.argv, EnvName: o.envName, ListenFD: o.listenFD, NoWaitDescendants: o.noWait,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Engines: o.g.engines(),
	}
	if o.listenFD {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--listen-fd: cannot find gracectl's own executable: %w", err)
		}
		cfg.Trampoline = []string{self, trampolineName, "--"}
	}
	b := &banner{w: o.g.stderr, emoji: isTerminal(o.g.stderr), store: cfg.Store, rg: rg,
		purpose: o.purpose, api: o.printsURL(), quiet: o.quiet}
	cfg.Notify = func(ev runner.Event) {
		// The watchdog is started once the port is taken: a run that gets
		// no port (a full range, a bad name) leaves nothing behind.
		if watch && ev.Kind == runner.EventAllocated && b.allocated == 0 {
			ensureWatchdog(cmd.Context(), o.g, store, rg, o.quiet)
		}
		b.event(ev)
	}
	code, err := runner.Run(cmd.Context(), cfg)
	if err != nil {
		var se *runner.StartError
		if errors.As(err, &se) {
			return &exitError{code: se.Code, err: err}
		}
		return requestError(err) // a bad name or range: a usage error, exit 2
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// printsURL: the banner gives the service's URL ("API: http://...") for an
// HTTP service, which is one with a health path, or the seed's own
// serve.py, whose start-up lines (PORT_MANAGER.md, "Integration with
// serve.py") end with its API's URL.
func (o *runOptions) printsURL() bool {
	return o.healthPath != "" || o.startedBy == "serve.py"
}

// noteSameName says on stderr when a service name derived from the command
// is already in use: every run of serve.py is "serve" unless told.
func noteSameName(ctx context.Context, g *globals, service string) {
	r, err := g.store().Read(ctx)
	if err != nil {
		return
	}
	var held []string
	for _, a := range r.Sorted() {
		if a.ServiceName == service {
			held = append(held, fmt.Sprintf("%d (pid %d)", a.Port, a.PID))
		}
	}
	if len(held) > 0 {
		fmt.Fprintf(g.stderr, "gracectl: note: service %q already holds port %s; give --service NAME to tell them apart\n", escape(service), strings.Join(held, ", "))
	}
}

// banner says what run does, in the seed's words.
type banner struct {
	w       io.Writer
	emoji   bool
	store   *registry.Store
	rg      registry.Range
	purpose string
	// api: the service's URL is worth a line (runOptions.printsURL).
	api       bool
	allocated int // allocation events seen
	// quiet (run -q): only warnings, and a port left unreleased.
	quiet bool
}

func (b *banner) mark(emoji string) string {
	if b.emoji {
		return emoji + " "
	}
	return ""
}

func (b *banner) event(ev runner.Event) {
	if ev.Kind == runner.EventAllocated {
		b.allocated++
	}
	if b.quiet && ev.Kind != runner.EventWarning && ev.Kind != runner.EventStillInUse {
		return
	}
	switch ev.Kind {
	case runner.EventAllocated:
		b.announce(ev)
	case runner.EventUp:
		if b.api {
			fmt.Fprintf(b.w, "%s is up\n%sAPI: %s\n", escape(ev.Alloc.Label()), b.mark("📡"), ev.URL)
		} else {
			fmt.Fprintf(b.w, "%s is up on port %d\n", escape(ev.Alloc.Label()), ev.Alloc.Port)
		}
	case runner.EventStillInUse:
		if ev.PID > 0 {
			fmt.Fprintf(b.w, "gracectl: port %d is still in use by pid %d after the service exited; not released, now tracking pid %d\n", ev.Alloc.Port, ev.PID, ev.PID)
		} else {
			fmt.Fprintf(b.w, "gracectl: port %d is still in use by an unknown process after the service exited; not released (the watchdog reports it as orphaned)\n", ev.Alloc.Port)
		}
	case runner.EventOwner:
		fmt.Fprintf(b.w, "gracectl: port %d is owned by pid %d now, a process the service started that lives on\n", ev.Alloc.Port, ev.PID)
	case runner.EventContainer:
		what := fmt.Sprintf("%s, id %s", escape(ev.Container.Describe()), ev.Container.Short())
		if ev.PID > 0 {
			what += fmt.Sprintf(", main pid %d", ev.PID)
		}
		if ev.Kept {
			fmt.Fprintf(b.w, "gracectl: port %d stays with %s, which runs on: it is released once the container is removed\n", ev.Alloc.Port, what)
		} else {
			fmt.Fprintf(b.w, "gracectl: port %d is owned by %s\n", ev.Alloc.Port, what)
		}
	case runner.EventStopping:
		fmt.Fprintf(b.w, "gracectl: stopping %s (its stop signal, then its stop timeout)\n", escape(ev.Container.Describe()))
	case runner.EventReleased:
		if ev.Msg != "" {
			fmt.Fprintf(b.w, "[PORT-MANAGER] Released port %d: %s\n", ev.Alloc.Port, oneLine(ev.Msg))
		} else {
			fmt.Fprintf(b.w, "[PORT-MANAGER] Released port %d\n", ev.Alloc.Port)
		}
	case runner.EventWarning:
		fmt.Fprintf(b.w, "gracectl: warning: %s\n", oneLine(ev.Msg))
	}
}

// announce prints an allocation: the first as the seed's banner (port,
// service, purpose, whether a watchdog runs), each named port after it in
// one line.
func (b *banner) announce(ev runner.Event) {
	if b.allocated > 1 {
		fmt.Fprintf(b.w, "%sAllocated port %d (%s)\n", b.mark("✅"), ev.Alloc.Port, escape(ev.Alloc.PortName))
		return
	}
	fmt.Fprintf(b.w, "Allocating port from managed range (%s)...\n", b.rg)
	if ev.Alloc.PortName != "" {
		fmt.Fprintf(b.w, "%sAllocated port %d (%s)\n", b.mark("✅"), ev.Alloc.Port, escape(ev.Alloc.PortName))
	} else {
		fmt.Fprintf(b.w, "%sAllocated port %d\n", b.mark("✅"), ev.Alloc.Port)
	}
	fmt.Fprintf(b.w, "   Service: %s\n", escape(ev.Alloc.ServiceName))
	if b.purpose != "" {
		fmt.Fprintf(b.w, "   Purpose: %s\n", escape(b.purpose))
	}
	wd, err := watchdog.LoadState(b.store)
	if err == nil && wd.Running {
		fmt.Fprintf(b.w, "   Watchdog: Active (monitors health every %s)\n", seconds(wd.IntervalSeconds))
	} else {
		fmt.Fprintf(b.w, "   Watchdog: Not running (start one with: gracectl watch)\n")
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// newExecTrampolineCmd is run's hidden exec step for --listen-fd: systemd's
// LISTEN_PID must be the service's own PID, which is only known after the
// fork, so gracectl re-executes itself, sets LISTEN_PID to its PID, and
// execs the command in place (the PID stays the same).
func newExecTrampolineCmd() *cobra.Command {
	return &cobra.Command{
		Use:    trampolineName + " -- PROGRAM [ARGS...]",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("no program")
			}
			os.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid()))
			err := syscall.Exec(args[0], append([]string{filepath.Base(args[0])}, args[1:]...), os.Environ())
			return &exitError{code: runner.ExitNotExecutable, err: fmt.Errorf("cannot run %s: %v", args[0], err)}
		},
	}
}
