package routes

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gracectl/gracectl/registry"
)

// Proxy is a reverse proxy gracectl keeps routes in. Every method touches
// gracectl's own objects only.
type Proxy interface {
	// Name says which proxy this is, for log lines and errors.
	Name() string
	// Check tells whether the proxy can be changed now (at start: an
	// error there stops the watchdog).
	Check(ctx context.Context) error
	// Apply makes the proxy hold t's routes and no other of gracectl's. It
	// finds out what the proxy holds first, so a proxy that restarted or
	// lost its configuration is brought back; changed says whether it had
	// to change anything.
	Apply(ctx context.Context, t *Table) (changed bool, err error)
	// Withdraw removes gracectl's objects (the watchdog stops: nothing
	// gates the routes any more).
	Withdraw(ctx context.Context) error
}

// ApplyTimeout bounds one change of the proxy.
const ApplyTimeout = 10 * time.Second

// Publisher keeps Proxy in step with Store: at once, and then whenever
// Kick is called (the watchdog calls it when the registry file changes,
// when an owner's exit was checked and after every cycle).
type Publisher struct {
	Proxy  Proxy
	Store  *registry.Store
	Config Config
	Log    func(line string)

	once    sync.Once
	kick    chan struct{}
	failing string          // the error of the episode under way, "" when the proxy follows
	skipped map[string]bool // skipped allocations already logged
	routed  map[string]int  // host → port routed at the last apply
	applied string          // the routes of the last apply, as text
}

func (p *Publisher) init() {
	p.once.Do(func() { p.kick = make(chan struct{}, 1) })
}

// Kick asks for the routes to be brought in step; it never blocks, and
// kicks while one is pending are one.
func (p *Publisher) Kick() {
	p.init()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run applies the routes at once and at every kick until ctx ends, then
// withdraws them.
func (p *Publisher) Run(ctx context.Context) {
	p.init()
	p.sync(ctx)
	for {
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ApplyTimeout)
			defer cancel()
			if err := p.Proxy.Withdraw(wctx); err != nil {
				p.log("Routes: could not withdraw gracectl's routes from %s: %v", p.Proxy.Name(), err)
			} else {
				p.log("Routes: withdrew gracectl's routes from %s", p.Proxy.Name())
			}
			return
		case <-p.kick:
			p.sync(ctx)
		}
	}
}

func (p *Publisher) log(format string, args ...any) {
	if p.Log != nil {
		p.Log("[PORT-WATCHDOG] " + fmt.Sprintf(format, args...))
	}
}

// sync is one round: read, plan, apply, and the log lines of what changed.
// A proxy that fails says so once per episode.
func (p *Publisher) sync(ctx context.Context) {
	r, err := p.Store.Read(ctx)
	if err != nil {
		return // the cycle reports it
	}
	t := Plan(r, p.Config)
	p.logSkipped(t)
	actx, cancel := context.WithTimeout(ctx, ApplyTimeout)
	changed, err := p.Proxy.Apply(actx, t)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if p.failing == "" {
			p.log("Routes: %v (the watchdog carries on; the routes are brought in step once this is over)", err)
		}
		p.failing = err.Error()
		return
	}
	if p.failing != "" {
		p.log("Routes: %s follows the registry again: %d routed", p.Proxy.Name(), len(t.Routed()))
		p.failing = ""
	}
	p.logChanges(t, changed)
}

func (p *Publisher) logSkipped(t *Table) {
	if p.skipped == nil {
		p.skipped = map[string]bool{}
	}
	now := map[string]bool{}
	for _, s := range t.Skipped {
		key := fmt.Sprintf("%d\x00%s\x00%s\x00%s", s.Port, s.Service, s.PortName, s.Reason)
		now[key] = true
		if !p.skipped[key] {
			label := s.Service
			if s.PortName != "" {
				label += " (" + s.PortName + ")"
			}
			p.log("Routes: port %d (%s) has no route: %s", s.Port, label, s.Reason)
		}
	}
	p.skipped = now
}

// logChanges says which routes came and went since the last apply.
func (p *Publisher) logChanges(t *Table, changed bool) {
	next := map[string]int{}
	var lines []string
	for _, r := range t.Routes {
		if r.State != StateRouted {
			continue
		}
		next[r.Host] = r.Port
		if p.routed[r.Host] != r.Port {
			lines = append(lines, fmt.Sprintf("Routes: %s -> 127.0.0.1:%d", r.Host, r.Port))
		}
	}
	for host, port := range p.routed {
		if _, ok := next[host]; !ok {
			why := "released"
			for _, r := range t.Routes {
				if r.Host == host {
					why = r.Reason
				}
			}
			lines = append(lines, fmt.Sprintf("Routes: %s withdrawn (port %d: %s)", host, port, why))
		}
	}
	now := fmt.Sprint(t.Routes)
	if changed && now == p.applied {
		// The same table again, and the proxy had to change: it had lost it.
		lines = append(lines, fmt.Sprintf("Routes: %s had lost gracectl's routes: %d routed again", p.Proxy.Name(), len(next)))
	}
	p.routed, p.applied = next, now
	for _, l := range lines {
		p.log("%s", l)
	}
}
