package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// settleTimeout bounds how long run waits, after a container stopped, for
// its engine to stop publishing the port.
const settleTimeout = 15 * time.Second

// containerRun is a `docker run` or `podman run` that run launched. The
// command is given a --cidfile in a private folder, and once the engine has
// written the container's ID there, the container (its main process, with
// its ID and name) becomes the port's owner. A stopping signal to run stops
// the container as `docker stop` does; when the client exits and the
// container still runs (`docker run -d`), the port stays the container's
// until it is removed.
type containerRun struct {
	rc      container.RunCommand
	engines *container.Engines
	dir     string // the private folder of the cidfile we added ("" if the command has its own)
	cidfile string

	info       *container.Info // once found; Socket set
	registered bool
	warned     bool

	stopOnce sync.Once
	stopped  chan struct{} // closed once a stop asked of the engine returned
	pending  bool          // a stopping signal came before the container was known
}

// newContainerRun recognises a container run; nil for any other command
// (or when no engines are to be asked).
func newContainerRun(argv []string, engines *container.Engines) (*containerRun, error) {
	rc, ok := container.ParseRun(argv)
	if !ok || engines == nil {
		return nil, nil
	}
	c := &containerRun{rc: rc, engines: engines, cidfile: rc.CIDFile}
	if c.cidfile == "" {
		dir, err := os.MkdirTemp("", "gracectl-run-")
		if err != nil {
			return nil, fmt.Errorf("cannot make a folder for the container ID file: %w", err)
		}
		c.dir, c.cidfile = dir, filepath.Join(dir, "cid")
	}
	return c, nil
}

// argv is the command with --cidfile added to the run subcommand.
func (c *containerRun) argv(argv []string) []string {
	if c.dir == "" {
		return argv
	}
	return slices.Insert(slices.Clone(argv), c.rc.At, "--cidfile", c.cidfile)
}

// remove deletes the folder of the cidfile.
func (c *containerRun) remove() {
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// find reads the container's ID once the engine has written it and asks
// the engine about it; it returns the container's state, or nil while it
// is not known.
func (c *containerRun) find(ctx context.Context, notify func(Event)) *container.State {
	var id string
	if c.info != nil {
		id = c.info.ID
	} else if b, err := os.ReadFile(c.cidfile); err == nil {
		id = strings.TrimSpace(string(b))
	}
	if id == "" {
		return nil // not created yet
	}
	st, err := c.engines.Find(ctx, c.rc.Engine, id, container.OwnUID())
	if err != nil || !st.Exists {
		if err != nil && !c.warned {
			c.warned = true
			notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("container %.12s: its engine cannot be asked (%v); the %s client stays the port's owner", id, err, c.rc.Engine)})
		}
		return nil
	}
	c.info = &st.Info
	return st
}

// register makes the container the owner of every port: its main process
// (or, where the engine's PIDs are not this host's, the client still), with
// its ID and name.
func (l *launch) registerContainer(st *container.State, untilRemoved bool) {
	c := l.ctr
	owner := l.owner
	if st.PID > 0 {
		if id, err := probe.IdentifyHere(st.PID); err == nil {
			owner = id
		}
	}
	rec := registry.NewContainer(st.Info, untilRemoved)
	reason := fmt.Sprintf("container %s started by gracectl run", rec.Label())
	if untilRemoved {
		reason = fmt.Sprintf("container %s runs on after its client exited (detached): the port is kept until it is removed", rec.Label())
	}
	for _, a := range l.allocs {
		if _, err := l.cfg.Store.Register(l.bg, registry.Claim{Port: a.Port, ID: a.ID, Owner: owner, Container: rec, Reason: reason, Force: true}); err != nil {
			l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not register container %s for port %d: %v", rec.Label(), a.Port, err)})
			return
		}
	}
	c.registered = true
	l.owner = owner
	l.notify(Event{Kind: EventContainer, Alloc: l.alloc, PID: st.PID, Container: &st.Info, Kept: untilRemoved})
}

// followContainer is called while the client runs: it makes the container
// the owner once it runs, and stops it if a stop was asked for meanwhile.
func (l *launch) followContainer() {
	c := l.ctr
	if c.registered {
		return
	}
	if st := c.find(l.bg, l.notify); st != nil && st.Running {
		l.registerContainer(st, false)
		if c.pending {
			l.stopContainer()
		}
	}
}

// stopContainer asks the engine to stop the container (its stop signal,
// then its stop timeout) and reports whether it could: false while the
// container is not known, and the signal is then forwarded to the client.
func (l *launch) stopContainer() bool {
	c := l.ctr
	if c.info == nil {
		c.pending = true
		return false
	}
	c.stopOnce.Do(func() {
		c.stopped = make(chan struct{})
		info := *c.info
		l.notify(Event{Kind: EventStopping, Alloc: l.alloc, Container: &info})
		go func() {
			defer close(c.stopped)
			if err := c.engines.Stop(l.bg, info, container.OwnUID()); err != nil {
				l.notify(Event{Kind: EventWarning, Msg: fmt.Sprintf("could not stop %s: %v", info.Describe(), err)})
			}
		}()
	})
	return true
}

// settleContainer runs once the client has exited, and reports whether
// the ports were handed on. A container that still runs was detached: it
// keeps the ports until it is removed. One that stopped is waited for until
// its engine's proxy no longer holds the ports, so that settle then finds
// them free and releases them.
func (l *launch) settleContainer() bool {
	c := l.ctr
	if c.stopped != nil {
		select {
		case <-c.stopped:
		case <-time.After(settleTimeout):
		}
	}
	st := c.find(l.bg, l.notify)
	if st == nil {
		return false
	}
	if st.Running {
		l.registerContainer(st, true)
		for _, a := range l.allocs {
			l.handedOn[a.Port] = true
		}
		return true
	}
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline) && l.proxyHolds(); {
		time.Sleep(l.cfg.PollEvery)
	}
	return false
}

// proxyHolds reports whether an engine's proxy still listens on one of the
// ports.
func (l *launch) proxyHolds() bool {
	snap := probe.TakeSnapshot()
	for _, a := range l.allocs {
		for _, pid := range snap.Owners(a.Port) {
			if container.IsProxy(probe.ProcessName(pid)) {
				return true
			}
		}
	}
	return false
}
