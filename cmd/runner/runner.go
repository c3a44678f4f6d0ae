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
}

// Event kinds reported to Notify.
const (
	EventAllocated  = "allocated"    // Alloc set
	EventStarted    = "started"      // PID set
	EventUp         = "up"           // URL set
	EventExited     = "exited"       // Code set
	EventReleased   = "released"     // Alloc set
	EventStillInUse = "still_in_use" // PID (0 if unknown) set
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

// Run does the whole run and returns the exit status gracectl should exit
// with: the child's, or 128+N if it died of signal N.
func Run(ctx context.Context, cfg Config) (int, error) {
	notify := cfg.Notify
	if notify == nil {
		notify = func(Event) {}
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 100 * time.Millisecond
	}
	if cfg.EnvName == "" {
		cfg.EnvName = "PORT"
	}
	if len(cfg.Argv) == 0 {
		return 0, errors.New("no command to run")
	}
	// Find the program before taking a port, so a typo leaves nothing behind.
	path, err := exec.LookPath(cfg.Argv[0])
	if err != nil {
		code := ExitNotFound
		if errors.Is(err, fs.ErrPermission) {
			code = ExitNotExecutable
		}
		return code, &StartError{Code: code, Err: fmt.Errorf("cannot run %s: %v", cfg.Argv[0], unwrapExec(err))}
	}

	// Signals that arrive from now on are held and forwarded once the
	// child exists.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	req := cfg.Request
	req.Command = cfg.Argv
	a, err := cfg.Store.Allocate(ctx, req)
	if err != nil {
		return 1, err
	}
	notify(Event{Kind: EventAllocated, Alloc: a})
	// From here on the port is ours to clean up: a SIGINT or SIGTERM that
	// cancels ctx is forwarded to the child, and must not cut short the
	// registration, the listening checks or the release.
	bg := context.WithoutCancel(ctx)

	release := func(reason string) {
		rel, err := cfg.Store.Release(bg, registry.ReleaseRequest{
			Port: a.Port, Force: true, By: "run", Reason: reason,
			Only: func(cur *registry.Allocation) bool { return cur.ID == a.ID },
		})
		if err != nil {
			notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not release port %d: %v", a.Port, err)})
			return
		}
		for _, r := range rel {
			notify(Event{Kind: EventReleased, Alloc: r})
		}
	}

	c, parentFiles, err := buildCommand(cfg, path, a.Port)
	if err != nil {
		release("could not prepare the command: " + err.Error())
		return 1, err
	}
	fg := prepareForeground(c, cfg.Stdin)
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
		}
		release("command could not be started")
		return code, &StartError{Code: code, Err: fmt.Errorf("cannot run %s: %v", cfg.Argv[0], unwrapExec(startErr))}
	}
	defer fg.restore()
	child := c.Process.Pid
	owner, err := probe.Identify(child)
	if err != nil {
		owner = probe.Identity{PID: child, Boot: probe.BootID()} // it already exited
	}
	if _, err := cfg.Store.Register(bg, a.Port, owner, "started by gracectl run"); err != nil {
		notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not register pid %d for port %d: %v", child, a.Port, err)})
	}
	notify(Event{Kind: EventStarted, Alloc: a, PID: child})

	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	poll := time.NewTicker(cfg.PollEvery)
	defer poll.Stop()
	up := false
	var waitErr error
loop:
	for {
		select {
		case sig := <-sigs:
			forward(child, sig)
		case waitErr = <-waited:
			break loop
		case <-poll.C:
			if up {
				poll.Stop()
				continue
			}
			if probe.TakeSnapshot().Listening(bg, a.Port) {
				up = true
				markActive(bg, cfg.Store, a.Port, owner)
				notify(Event{Kind: EventUp, Alloc: a, URL: "http://localhost:" + strconv.Itoa(a.Port)})
			}
		}
	}
	fg.restore()
	code := exitCode(c.ProcessState, waitErr)
	notify(Event{Kind: EventExited, Alloc: a, PID: child, Code: code})

	// A port still listening after the child exited is still in use (the
	// service daemonized, or a worker holds it): never release it silently.
	snap := probe.TakeSnapshot()
	if snap.Listening(bg, a.Port) {
		pids := snap.Owners(a.Port)
		if len(pids) > 0 {
			id, err := probe.Identify(pids[0])
			if err == nil {
				if _, err := cfg.Store.Register(bg, a.Port, id, fmt.Sprintf("pid %d still listens after pid %d exited", id.PID, child)); err == nil {
					notify(Event{Kind: EventStillInUse, Alloc: a, PID: id.PID})
					return code, nil
				}
			}
		}
		notify(Event{Kind: EventStillInUse, Alloc: a})
		return code, nil
	}
	release(fmt.Sprintf("service exited (%s)", describeExit(code)))
	return code, nil
}

// buildCommand prepares the child. It returns what the parent must close
// once the child has started.
func buildCommand(cfg Config, path string, port int) (*exec.Cmd, []io.Closer, error) {
	ps := strconv.Itoa(port)
	args := make([]string, len(cfg.Argv))
	for i, a := range cfg.Argv {
		args[i] = strings.ReplaceAll(a, "{port}", ps)
	}
	env := append(os.Environ(), cfg.EnvName+"="+ps, "GRACECTL_PORT="+ps)
	var c *exec.Cmd
	var closers []io.Closer
	if cfg.ListenFD {
		l, err := net.Listen("tcp", ":"+ps)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot listen on port %d for --listen-fd: %w", port, err)
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

// markActive records that the owner is now listening, if the allocation is
// still the one this run made.
func markActive(ctx context.Context, s *registry.Store, port int, owner probe.Identity) {
	_ = s.Update(ctx, func(r *registry.Registry, tx *registry.Tx) error {
		a := r.Get(port)
		if a == nil || a.PID != owner.PID || a.HealthStatus != registry.StatusStarting {
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
		return "killed by signal " + strconv.Itoa(code-128)
	}
	return "exit status " + strconv.Itoa(code)
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
