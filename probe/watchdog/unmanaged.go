package watchdog

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// Unmanaged is a process listening in the managed range on a port that no
// allocation holds (a squatter): allocate skips its port, and check counts
// it as an issue until it is adopted (`gracectl adopt`) or goes away.
type Unmanaged struct {
	Port    int    `json:"port"`
	PID     int    `json:"pid,omitzero"`     // 0: not visible (another user's process, or no /proc)
	Command string `json:"command,omitzero"` // its command line
	User    string `json:"user,omitzero"`
	// Container is the container that publishes the port, when the
	// listener is its engine's proxy.
	Container *container.Info `json:"container,omitzero"`
	// NAT: no process listens on the port; Container publishes it through
	// its engine's NAT rules alone (PID is 0).
	NAT bool `json:"nat,omitzero"`
}

// Issue is how check names it.
func (u Unmanaged) Issue() string {
	if u.NAT && u.Container != nil {
		return fmt.Sprintf("unmanaged listener: port %d is published by %s through NAT rules alone (no process listens) without an allocation", u.Port, u.Container.Describe())
	}
	who := "an unknown process"
	if u.PID > 0 {
		who = fmt.Sprintf("pid %d", u.PID)
		if u.Command != "" {
			who += " (" + u.Command + ")"
		}
		if u.User != "" {
			who += " of user " + u.User
		}
		if u.Container != nil {
			who = u.Container.Describe() + " through " + who
		}
	}
	return fmt.Sprintf("unmanaged listener: port %d is served by %s without an allocation", u.Port, who)
}

// FindUnmanaged lists the listeners in rg on ports reg does not hold, by
// port. A listener that is a container engine's proxy is named with its
// container when lk (which may be nil) can ask the engine; through lk,
// ports that a container publishes by NAT rules alone, with no process
// listening, are listed too.
func FindUnmanaged(ctx context.Context, socks *probe.Snapshot, rg registry.Range, reg *registry.Registry, lk *container.Lookup) []Unmanaged {
	var ports []int
	for _, p := range socks.ListeningIn(ctx, rg.Start, rg.End) {
		if reg.Get(p) == nil {
			ports = append(ports, p)
		}
	}
	var out []Unmanaged
	if len(ports) > 0 {
		owners := socks.OwnersOf(ports)
		out = make([]Unmanaged, 0, len(ports))
		for _, p := range ports {
			u := Unmanaged{Port: p}
			if pids := owners[p]; len(pids) > 0 {
				u.PID = pids[0]
				u.Command = registry.SafeText(strings.Join(probe.Cmdline(u.PID), " "), 256)
				u.User = registry.SafeText(probe.ProcessUser(u.PID), 64)
				u.Container = lk.Publisher(ctx, p, u.PID)
			}
			out = append(out, u)
		}
	}
	n := len(out)
	for p, in := range lk.Published(ctx) {
		if !rg.Contains(p) || reg.Get(p) != nil || socks.Listening(ctx, p) {
			continue
		}
		out = append(out, Unmanaged{Port: p, Container: &in, NAT: true})
	}
	if len(out) > n {
		slices.SortFunc(out, func(a, b Unmanaged) int { return a.Port - b.Port })
	}
	return out
}
