package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/gracectl/gracectl/probe"
)

// Engines finds the container engines of this host and keeps a client for
// each. The zero value looks in the usual places; a long-lived holder (the
// watchdog) reuses its connections from cycle to cycle.
type Engines struct {
	// DockerHost is $DOCKER_HOST: a unix:// socket there is tried first.
	// Other schemes are not engines of this host and are ignored.
	DockerHost string
	// RuntimeDir is $XDG_RUNTIME_DIR: this user's rootless engines have
	// their sockets there (as under /run/user/UID).
	RuntimeDir string

	mu   sync.Mutex
	open map[string]*Engine // by socket and the uid it is trusted for
}

// ErrNoEngine means no container engine could be asked.
var ErrNoEngine = errors.New("no container engine answers")

// sockets lists where engines serving user uid may listen, most likely
// first: $DOCKER_HOST, the rootful Docker and Podman sockets, then that
// user's rootless ones: under /run/user/UID, under this process's
// $XDG_RUNTIME_DIR when uid is its own, and under dirs (the runtime
// folders a process of that user names).
func (e *Engines) sockets(uid int, dirs []string) []string {
	var out []string
	if p, ok := strings.CutPrefix(e.DockerHost, "unix://"); ok && p != "" {
		out = append(out, p)
	}
	out = append(out, "/run/docker.sock", "/var/run/docker.sock", "/run/podman/podman.sock")
	if uid > 0 {
		dirs = append([]string{"/run/user/" + strconv.Itoa(uid)}, dirs...)
		if uid == OwnUID() && e.RuntimeDir != "" {
			dirs = append(dirs, e.RuntimeDir)
		}
		for _, dir := range dirs {
			if filepath.IsAbs(dir) {
				out = append(out, filepath.Join(dir, "docker.sock"), filepath.Join(dir, "podman", "podman.sock"))
			}
		}
	}
	return out
}

// For returns the engines that can be asked about user uid's containers
// and listeners: those whose socket is served by root or by uid. A socket
// that does not exist is skipped without a word; the error says why
// existing ones could not be asked, when none could.
func (e *Engines) For(ctx context.Context, uid int) ([]*Engine, error) {
	return e.forDirs(ctx, uid, nil)
}

// forDirs is For, also looking in the rootless runtime folders dirs.
func (e *Engines) forDirs(ctx context.Context, uid int, dirs []string) ([]*Engine, error) {
	var out []*Engine
	var errs []error
	seen := map[[2]uint64]bool{}
	for _, sock := range e.sockets(uid, dirs) {
		var st syscall.Stat_t
		if syscall.Stat(sock, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			continue
		}
		key := [2]uint64{uint64(st.Dev), st.Ino} // /var/run is usually /run
		if seen[key] {
			continue
		}
		seen[key] = true
		g, err := e.engine(ctx, sock, uid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		if len(errs) == 0 {
			return nil, ErrNoEngine
		}
		return nil, fmt.Errorf("%w: %w", ErrNoEngine, errors.Join(errs...))
	}
	return out, nil
}

// engine returns the client for socket trusted for uid, connecting once.
func (e *Engines) engine(ctx context.Context, sock string, uid int) (*Engine, error) {
	key := sock + "\x00" + strconv.Itoa(uid)
	e.mu.Lock()
	g := e.open[key]
	e.mu.Unlock()
	if g != nil {
		return g, nil
	}
	g, err := connect(ctx, sock, uid)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == nil {
		e.open = map[string]*Engine{}
	}
	if old := e.open[key]; old != nil {
		g.close()
		return old, nil
	}
	e.open[key] = g
	return g, nil
}

// drop forgets a client whose engine stopped answering, so the next
// question connects again.
func (e *Engines) drop(g *Engine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, v := range e.open {
		if v == g {
			delete(e.open, k)
		}
	}
	g.close()
}

// Close drops every client.
func (e *Engines) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, g := range e.open {
		g.close()
		delete(e.open, k)
	}
}

// at returns the engine at the socket a container was found on, trusted
// for uid.
func (e *Engines) at(ctx context.Context, sock string, uid int) (*Engine, error) {
	var st syscall.Stat_t
	if sock == "" || syscall.Stat(sock, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return nil, fmt.Errorf("%w at %q", ErrNoEngine, sock)
	}
	return e.engine(ctx, sock, uid)
}

// Find asks the engines of kind ("docker", "podman"; "" for any) that
// serve user uid for container id (an ID or a name), and returns the first
// that knows it, with Socket set. A container no engine knows is returned
// with Exists false; ErrNoEngine when none could be asked.
func (e *Engines) Find(ctx context.Context, kind, id string, uid int) (*State, error) {
	engines, err := e.For(ctx, uid)
	if err != nil {
		return nil, err
	}
	asked := false
	for _, g := range engines {
		if kind != "" && g.Kind != kind {
			continue
		}
		asked = true
		st, err := g.inspect(ctx, id)
		if err != nil {
			e.drop(g)
			continue
		}
		if st.Exists {
			st.Socket = g.Socket
			return st, nil
		}
	}
	if !asked {
		return nil, fmt.Errorf("%w (no %s engine)", ErrNoEngine, kind)
	}
	return &State{Info: Info{ID: id, Engine: kind}}, nil
}

// State asks the engine a container was found on (c.Socket) about it
// now, trusting that socket if root or uid serves it.
func (e *Engines) State(ctx context.Context, c Info, uid int) (*State, error) {
	g, err := e.at(ctx, c.Socket, uid)
	if err != nil {
		return nil, err
	}
	st, err := g.inspect(ctx, c.ID)
	if err != nil {
		e.drop(g)
		return nil, err
	}
	st.Socket = g.Socket
	return st, nil
}

// Stop stops container c as `docker stop` does (its stop signal, then its
// stop timeout) and returns once it has stopped.
func (e *Engines) Stop(ctx context.Context, c Info, uid int) error {
	g, err := e.at(ctx, c.Socket, uid)
	if err != nil {
		return err
	}
	return g.stop(ctx, c.ID)
}

// Lookup is one look at the engines (a watchdog cycle, one command): each
// engine's list of published ports is asked for once, when first needed.
type Lookup struct {
	e         *Engines
	mu        sync.Mutex // probes run in parallel
	published map[*Engine]map[int]Info
	nat       map[int]Info // Published, once asked
	natAsked  bool
}

// Lookup starts a look; nil for nil Engines (no engine is asked).
func (e *Engines) Lookup() *Lookup {
	if e == nil {
		return nil
	}
	return &Lookup{e: e, published: map[*Engine]map[int]Info{}}
}

// Engines is what the look asks.
func (l *Lookup) Engines() *Engines { return l.e }

// Publisher names the container that publishes port, which process pid
// holds: nil unless pid is an engine's proxy (IsProxy) and an engine
// served by root or by pid's user says a running container of its
// publishes that port. A rootless engine's socket is looked for where
// pid's user has it: under /run/user/UID or pid's $XDG_RUNTIME_DIR.
func (l *Lookup) Publisher(ctx context.Context, port, pid int) *Info {
	if l == nil || pid <= 0 || !IsProxy(probe.ProcessName(pid)) {
		return nil
	}
	uid, ok := probe.ProcessUID(pid)
	if !ok {
		return nil
	}
	var dirs []string
	if dir, ok := probe.Getenv(pid, "XDG_RUNTIME_DIR"); ok && uid > 0 {
		dirs = append(dirs, dir)
	}
	engines, _ := l.e.forDirs(ctx, uid, dirs)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, g := range engines {
		if in, ok := l.publishedBy(ctx, g)[port]; ok {
			in.Socket = g.Socket
			return &in
		}
	}
	return nil
}

// Published lists the host ports that running containers publish in this
// network namespace whether or not a process listens on them: those of
// root's engines that run here (Engine.natHere), whose ports are published
// by NAT rules, with or without a proxy holding them. It is how a port
// published through NAT alone (no listener at all) is credited to its
// container. Asked once per look; nil when no such engine answers.
func (l *Lookup) Published(ctx context.Context) map[int]Info {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.natAsked {
		return l.nat
	}
	l.natAsked = true
	engines, _ := l.e.For(ctx, OwnUID())
	var out map[int]Info
	for _, g := range engines {
		if !g.natHere() {
			continue
		}
		for p, in := range l.publishedBy(ctx, g) {
			if _, dup := out[p]; dup {
				continue
			}
			if out == nil {
				out = map[int]Info{}
			}
			in.Socket = g.Socket
			out[p] = in
		}
	}
	l.nat = out
	return out
}

// publishedBy is engine g's list of published ports, asked for once per
// look (nil when it could not be had). l.mu is held.
func (l *Lookup) publishedBy(ctx context.Context, g *Engine) map[int]Info {
	ports, ok := l.published[g]
	if !ok {
		var err error
		if ports, err = g.published(ctx); err != nil {
			l.e.drop(g)
		}
		l.published[g] = ports
	}
	return ports
}

// OwnUID is the uid this process runs as: the user concerned when
// gracectl itself starts a container.
func OwnUID() int { return os.Getuid() }

// Follow streams the container events of the engine at c.Socket (trusted
// if root or uid serves it) to fn until ctx ends or the stream breaks;
// opened is called with the engine's kind once the stream is open.
func (e *Engines) Follow(ctx context.Context, c Info, uid int, opened func(kind string), fn func(Event)) error {
	g, err := e.at(ctx, c.Socket, uid)
	if err != nil {
		return err
	}
	err = g.Follow(ctx, func() { opened(g.Kind) }, fn)
	if ctx.Err() == nil {
		e.drop(g) // the engine may have restarted: connect afresh
	}
	return err
}
