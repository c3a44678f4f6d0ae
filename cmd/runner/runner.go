// Package runner launches a service on a managed port and owns its
// lifetime: it allocates the port, starts the command with the port in its
// environment and arguments, registers the child (PID and start time) as
// the owner, forwards signals to it, and releases the port when it ends —
// unless something still listens there, in which case the listener is
// tracked instead of a port in use being handed out again.
//
// It never prints; what happens is reported through Config.Notify.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// Exit statuses for a command that cannot be started, as shells use them.
const (
	ExitNotFound      = 127
	ExitNotExecutable = 126
)

// Config is one `gracectl run`.
type Config struct {
	Store   *registry.Store
	Request registry.Request // Owner is filled in by Run
	Argv    []string         // command and arguments; {port} is replaced
	EnvName string           // variable that receives the port (default PORT)
	// ListenFD makes Run bind and listen itself and hand the socket to the
	// child as fd 3 with systemd's LISTEN_FDS protocol, through Trampoline.
	ListenFD   bool
	Trampoline []string // argv prefix that re-executes gracectl's exec step
	Stdin      *os.File
	Stdout     io.Writer
	Stderr     io.Writer
	Notify     func(Event)
	// PollEvery is how often Run looks for the child's listener while it
	// is starting (default 100 ms).
	PollEvery time.Duration
	// NoWaitDescendants makes Run end when the child exits even if
	// processes it started live on (a daemonized service): the port then
	// goes to whatever listens on it, or is released, as the watchdog would.
	// By default (Linux) Run is their child subreaper and waits for them.
	NoWaitDescendants bool
	// Engines, if set, are asked about the container of a `docker run` or
	// `podman run` command, which then owns the port (container.go).
	Engines *container.Engines
}

// Event kinds reported to Notify.
const (
	EventAllocated  = "allocated"    // Alloc set
	EventStarted    = "started"      // PID set
	EventUp         = "up"           // URL set
	EventExited     = "exited"       // Code set
	EventReleased   = "released"     // Alloc set, Msg the reason
	EventStillInUse = "still_in_use" // PID (0 if unknown) set
	EventOwner      = "owner"        // PID set: a descendant owns the port now
	EventContainer  = "container"    // Container set (and PID, its main process): the container owns the ports now; Kept: until it is removed
	EventStopping   = "stopping"     // Container set: run asked its engine to stop it
	EventWarning    = "warning"      // Msg set
)

// Event is something Run tells its caller.
type Event struct {
	Kind  string
	Alloc *registry.Allocation
	PID   int
	URL   string
	Code  int
	Msg   string
	// Container is the container the event is about.
	Container *container.Info
	// Kept: the container keeps the ports until it is removed.
	Kept bool
}

// StartError is a command that could not be started; Code is 126 or 127.
type StartError struct {
	Code int
	Err  error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// forwarded are the signals sent on to the child. The stopping ones go to
// its whole process group, so workers it spawned stop with it.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

func toGroup(sig os.Signal) bool {
	return sig != syscall.SIGUSR1 && sig != syscall.SIGUSR2
}

// launch is one run in progress: what each step has done so far. Its
// steps run in order (allocate, start, register, supervise, settle), and
// cleanup undoes whatever a failed or interrupted run left behind.
type launch struct {
	cfg    Config
	notify func(Event)
	path   string         // the program, found before a port is taken
	sigs   chan os.Signal // signals held for the child
	bg     context.Context

	allocs []*registry.Allocation // set by allocate: one per port name
	alloc  *registry.Allocation   // allocs[0], the port $PORT names
	cmd    *exec.Cmd              // set by start
	fg     *foreground
	owner  probe.Identity
	waited chan error
	// handedOn holds the ports settled by handing them to a process still
	// listening; cleanup releases the others.
	handedOn map[int]bool
	// reason is why cleanup releases the port.
	reason string
	// subreaper: daemonized descendants are re-parented to gracectl.
	subreaper bool
	// owners are the descendants that own each port now, once the child
	// has exited (followDescendants).
	owners map[int]probe.Identity
	// ctr is set when the command is a container run (container.go).
	ctr *containerRun
	// token goes into the service's environment (RunTokenEnv); its hash
	// is the allocations' DescendantMark.
	token string
	// seen are the service's processes at the last look
	// (recordDescendants).
	seen map[probe.Identity]bool
}

// Run does the whole run and returns the exit status gracectl should exit
// with: the child's, or 128+N if it died of signal N.
func Run(ctx context.Context, cfg Config) (code int, err error) {
	l, err := newLaunch(ctx, cfg)
	if err != nil {
		return startCode(err), err
	}
	defer l.cleanup()
	if err := l.allocate(ctx); err != nil {
		return 1, err
	}
	// Only now, before the child starts: what Notify started on
	// allocation (run's background watchdog) is not the service's.
	// A container run's service is the container: the processes its
	// client leaves behind (Podman's conmon, rootlessport, slirp4netns,
	// pause process) are the engine's, and go where they go without
	// gracectl, not to run.
	if !cfg.NoWaitDescendants && l.ctr == nil {
		l.subreaper = becomeSubreaper()
	}
	if err := l.start(); err != nil {
		return startCode(err), err
	}
	l.register()
	code = l.supervise()
	l.settle(code)
	return code, nil
}

// startCode is the exit status for a command that could not be started.
func startCode(err error) int {
	var se *StartError
	if errors.As(err, &se) {
		return se.Code
	}
	return 1
}

// newLaunch checks the request and finds the program before a port is
// taken, so a typo leaves nothing behind. Signals that arrive from now on
// are held and forwarded once the child exists.
func newLaunch(ctx context.Context, cfg Config) (*launch, error) {
	if cfg.Notify == nil {
		cfg.Notify = func(Event) {}
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 100 * time.Millisecond
	}
	if cfg.EnvName == "" {
		cfg.EnvName = "PORT"
	}
	if len(cfg.Argv) == 0 {
		return nil, errors.New("no command to run")
	}
	path, err := exec.LookPath(cfg.Argv[0])
	if err != nil {
		// As a shell: 127 when there is no such command, 126 when there
		// is one that cannot be run (not executable, a directory).
		code := ExitNotExecutable
		if why := unwrapExec(err); errors.Is(why, exec.ErrNotFound) || errors.Is(why, fs.ErrNotExist) {
			code = ExitNotFound
		}
		return nil, &StartError{Code: code, Err: cannotRun(cfg.Argv[0], err)}
	}
	l := &launch{cfg: cfg, notify: cfg.Notify, path: path, sigs: make(chan os.Signal, 8),
		// Once a port is taken it is ours to clean up: a SIGINT or SIGTERM
		// that cancels ctx is forwarded to the child, and must not cut
		// short the registration, the listening checks or the release.
		bg: context.WithoutCancel(ctx)}
	if l.ctr, err = newContainerRun(cfg.Argv, cfg.Engines); err != nil {
		return nil, err
	}
	signal.Notify(l.sigs, forwarded...)
	return l, nil
}

// allocate takes the port.
func (l *launch) allocate(ctx context.Context) error {
	req := l.cfg.Request
	req.Command = l.cfg.Argv
	req.Supervisor = probe.Self() // until run ends, run answers for the port
	l.token, req.Mark = newRunToken()
	all, err := l.cfg.Store.AllocateAll(ctx, req)
	if err != nil {
		return err
	}
	l.allocs, l.alloc = all, all[0]
	for _, a := range all {
		l.notify(Event{Kind: EventAllocated, Alloc: a})
	}
	return nil
}

// start starts the child with the port in its environment and arguments.
func (l *launch) start() error {
	cfg := l.cfg
	if l.ctr != nil {
		cfg.Argv = l.ctr.argv(cfg.Argv)
	}
	c, parentFiles, err := buildCommand(cfg, l.path, l.allocs, l.token)
	if err != nil {
		l.reason = "could not prepare the command: " + registry.PlainText(err)
		return err
	}
	l.fg = prepareForeground(c, l.cfg.Stdin)
	startErr := c.Start()
	// The child has its own copy of a --listen-fd socket; ours would keep
	// the port open after the child is gone.
	for _, f := range parentFiles {
		f.Close()
	}
	if startErr != nil {
		code := ExitNotExecutable
		if errors.Is(startErr, os.ErrNotExist) {
			code = ExitNotFound
			if interp := missingInterpreter(l.path); interp != "" {
				// The file is there; its #! line names what is not.
				l.reason = "command could not be started"
				return &StartError{Code: code, Err: fmt.Errorf("cannot run %s: its interpreter %s (the #! line) was not found",
					registry.Quote(l.cfg.Argv[0]), registry.Quote(interp))}
			}
		}
		l.reason = "command could not be started"
		return &StartError{Code: code, Err: cannotRun(l.cfg.Argv[0], startErr)}
	}
	l.cmd = c
	l.waited = make(chan error, 1)
	go func() { l.waited <- c.Wait() }()
	return nil
}

// register records the child, by PID and start time, as the port's owner.
func (l *launch) register() {
	child := l.cmd.Process.Pid
	owner, err := probe.Identify(child)
	if err != nil {
		owner = probe.Identity{PID: child, Boot: probe.BootID()} // it already exited
	}
	l.owner = owner
	for _, a := range l.allocs {
		if _, err := l.cfg.Store.Register(l.bg, registry.Claim{Port: a.Port, ID: a.ID, Owner: owner, Reason: "started by gracectl run"}); err != nil {
			l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not register pid %d for port %d: %s", child, a.Port, registry.PlainText(err))})
		}
	}
	l.notify(Event{Kind: EventStarted, Alloc: l.alloc, PID: child})
}

// supervise forwards signals to the child and marks the allocation active
// once it listens, until the child exits; it returns the child's status.
func (l *launch) supervise() int {
	child := l.cmd.Process.Pid
	poll := time.NewTicker(l.cfg.PollEvery)
	defer poll.Stop()
	// The service's processes are recorded as they appear: at every poll
	// while it starts, then every few seconds.
	record := time.NewTicker(recordEvery)
	defer record.Stop()
	up := map[int]bool{}
	var waitErr error
loop:
	for {
		select {
		case sig := <-l.sigs:
			if l.ctr != nil && toGroup(sig) && l.stopContainer() {
				continue // the engine stops it; the client exits with it
			}
			forward(child, sig)
		case waitErr = <-l.waited:
			break loop
		case <-record.C:
			l.recordDescendants(false)
		case <-poll.C:
			if l.ctr != nil {
				l.followContainer()
			}
			if len(up) == len(l.allocs) && (l.ctr == nil || l.ctr.registered) {
				poll.Stop()
				continue
			}
			l.recordDescendants(false)
			snap := probe.TakeSnapshot()
			for _, a := range l.allocs {
				if !up[a.Port] && snap.Listening(l.bg, a.Port) {
					up[a.Port] = true
					markActive(l.bg, l.cfg.Store, a.Port, l.owner)
					l.notify(Event{Kind: EventUp, Alloc: a, URL: "http://localhost:" + strconv.Itoa(a.Port)})
				}
			}
		}
	}
	// What the child left running, before anything else: should run be
	// killed now, the watchdog finds them for the port.
	l.recordDescendants(true)
	l.fg.restore()
	code := exitCode(l.cmd.ProcessState, waitErr)
	l.notify(Event{Kind: EventExited, Alloc: l.alloc, PID: child, Code: code})
	if l.subreaper {
		l.awaitDescendants()
	}
	return code
}

// settle decides each port's fate after the child (and its descendants)
// ended. A port still listening is still in use (a worker holds it, or
// something outside gracectl's tree): it is never released silently, and
// its listener becomes the owner. The others are released by cleanup.
func (l *launch) settle(code int) {
	l.reason = describeExit(code)
	l.handedOn = map[int]bool{}
	if l.ctr != nil && l.settleContainer() {
		return // a detached container keeps them
	}
	snap := probe.TakeSnapshot()
	for _, a := range l.allocs {
		if !snap.Listening(l.bg, a.Port) {
			continue
		}
		l.handedOn[a.Port] = true
		if pids := snap.Owners(a.Port); len(pids) > 0 {
			if id, err := probe.IdentifyLocal(pids[0]); err == nil {
				reason := fmt.Sprintf("pid %d still listens after pid %d exited", id.PID, l.owner.PID)
				if _, err := l.cfg.Store.Register(l.bg, registry.Claim{Port: a.Port, ID: a.ID, Owner: id, Reason: reason}); err == nil {
					l.notify(Event{Kind: EventStillInUse, Alloc: a, PID: id.PID})
					continue
				}
			}
		}
		l.notify(Event{Kind: EventStillInUse, Alloc: a})
	}
}

// cleanup gives the terminal back, stops holding signals and releases
// every port settle did not hand on: the one place a run releases ports.
func (l *launch) cleanup() {
	signal.Stop(l.sigs)
	if l.ctr != nil {
		l.ctr.remove()
	}
	if l.fg != nil {
		l.fg.restore()
	}
	reason := l.reason
	if reason == "" {
		reason = "gracectl run stopped"
	}
	for _, a := range l.allocs {
		if l.handedOn[a.Port] {
			continue
		}
		rel, err := l.cfg.Store.Release(l.bg, registry.ReleaseRequest{
			Port: a.Port, Force: true, By: "run", Reason: reason,
			ID: a.ID,
		})
		if err != nil {
			l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not release port %d: %s", a.Port, registry.PlainText(err))})
			continue
		}
		for _, r := range rel {
			l.notify(Event{Kind: EventReleased, Alloc: r, Msg: reason})
		}
	}
}

// buildCommand prepares the child: the first port in $PORT (or EnvName)
// and $GRACECTL_PORT, a named port also in $PORT_NAME, {port} and
// {port.NAME} replaced in the arguments. It returns what the parent must
// close once the child has started.
func buildCommand(cfg Config, path string, allocs []*registry.Allocation, token string) (*exec.Cmd, []io.Closer, error) {
	first := strconv.Itoa(allocs[0].Port)
	env := append(os.Environ(), cfg.EnvName+"="+first, "GRACECTL_PORT="+first, registry.RunTokenEnv+"="+token)
	pairs := []string{"{port}", first}
	for _, a := range allocs {
		if a.PortName != "" {
			p := strconv.Itoa(a.Port)
			env = append(env, PortEnvName(a.PortName)+"="+p)
			pairs = append(pairs, "{port."+a.PortName+"}", p)
		}
	}
	repl := strings.NewReplacer(pairs...)
	args := make([]string, len(cfg.Argv))
	for i, a := range cfg.Argv {
		args[i] = repl.Replace(a)
	}
	var c *exec.Cmd
	var closers []io.Closer
	if cfg.ListenFD {
		if len(allocs) > 1 {
			return nil, nil, errors.New("--listen-fd hands over one socket; it cannot be used with several --port names")
		}
		l, err := net.Listen("tcp", ":"+first)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot listen on port %s for --listen-fd: %w", first, err)
		}
		f, err := l.(*net.TCPListener).File()
		l.Close()
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, f)
		tramp := append(append([]string{}, cfg.Trampoline...), append([]string{path}, args[1:]...)...)
		c = exec.Command(tramp[0], tramp[1:]...)
		c.ExtraFiles = []*os.File{f}
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=gracectl")
	} else {
		c = exec.Command(path, args[1:]...)
		c.Args[0] = args[0]
	}
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	setChildAttrs(c)
	return c, closers, nil
}

// PortEnvName is the variable that carries a named port: PORT_HTTP for
// "http".
func PortEnvName(name string) string { return "PORT_" + registry.EnvWord(name) }

// markActive records that the owner is now listening, if the allocation is
// still the one this run made.
func markActive(ctx context.Context, s *registry.Store, port int, owner probe.Identity) {
	_ = s.Update(ctx, func(r *registry.Registry, tx *registry.Tx) error {
		a := r.Get(port)
		if a == nil || int(a.PID) != owner.PID || a.HealthStatus != registry.StatusStarting {
			return registry.ErrNoChange
		}
		a.HealthStatus = registry.StatusActive
		return nil
	})
}

func forward(pid int, sig os.Signal) {
	s := sig.(syscall.Signal)
	if toGroup(sig) {
		// The child leads its own process group.
		if err := syscall.Kill(-pid, s); err == nil {
			return
		}
	}
	_ = syscall.Kill(pid, s)
}

func exitCode(st *os.ProcessState, err error) int {
	if st == nil {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

func describeExit(code int) string {
	if code > 128 && code < 128+65 {
		return "service killed by signal " + strconv.Itoa(code-128)
	}
	return "service exited with status " + strconv.Itoa(code)
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// missingInterpreter is the interpreter a script's #! line names when the
// script exists and that interpreter does not ("" otherwise): what the
// kernel's ENOENT meant.
func missingInterpreter(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := io.ReadFull(f, buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	rest, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return ""
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "(none)"
	}
	if _, err := os.Stat(fields[0]); err == nil {
		return ""
	}
	return fields[0]
}

// cannotRun says why the command name could not be started, and what to
// do, in one sentence: not "executable file not found in $PATH".
func cannotRun(name string, err error) error {
	q := registry.Quote(name)
	why := unwrapExec(err)
	switch {
	case errors.Is(why, exec.ErrNotFound):
		return fmt.Errorf("cannot run %s: no command of that name is in $PATH; check its spelling, install it, or give its path", q)
	case errors.Is(why, fs.ErrNotExist):
		return fmt.Errorf("cannot run %s: there is no such file; check the path", q)
	case errors.Is(why, fs.ErrPermission):
		return fmt.Errorf("cannot run %s: it is not executable (chmod +x it, or run it through its interpreter: sh %s)", q, q)
	case errors.Is(why, syscall.ENOEXEC):
		return fmt.Errorf("cannot run %s: it is not a program this system can start (a script needs a #! line)", q)
	case errors.Is(why, syscall.EISDIR):
		return fmt.Errorf("cannot run %s: it is a directory, not a program", q)
	case errors.Is(why, exec.ErrDot):
		return fmt.Errorf("cannot run %s: it is found only in the working folder, which $PATH names relatively; give it as ./%s", q, name)
	}
	return fmt.Errorf("cannot run %s: %v", q, why)
}
