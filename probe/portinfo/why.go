// Package portinfo answers the everyday questions about one port: why it
// is busy or free (Explain), whether it listens on loopback yet (Listening,
// for `wait`), and which processes listen on it (the targets of `free`).
// It reads the registry and the host and changes neither.
package portinfo

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// Why is what `gracectl why PORT --json` prints: every reason a port is
// or is not free.
type Why struct {
	Port int  `json:"port"`
	Free bool `json:"free"`
	// Reasons say, one sentence each, what keeps the port from being
	// free; empty when it is.
	Reasons    []string             `json:"reasons"`
	Allocation *registry.Allocation `json:"allocation,omitzero"`
	// HeldElsewhere is the host registry's allocation of the port, seen
	// from a private, project or --root registry: allocation here skips it.
	HeldElsewhere *registry.Held `json:"held_elsewhere,omitzero"`
	// Owner is the allocation's owner as found here; absent when it does
	// not run or cannot be looked at.
	Owner *Process `json:"owner,omitzero"`
	// Sockets are those of gracectl's network namespace whose local port
	// is the port: listeners and bound UDP sockets first, then
	// connections and TIME_WAITs.
	Sockets []Socket `json:"sockets"`
	// Omitted counts the connections left out of Sockets (at most
	// MaxSockets are listed).
	Omitted int `json:"omitted,omitzero"`
	// OtherNamespaces are the sockets on the port in other network
	// namespaces that can be looked into (containers, unshare -n): they do
	// not keep the port from being bound here.
	OtherNamespaces []Socket `json:"other_namespaces"`
	// Bindable says whether a TCP server could bind the port right now on
	// the IPv4 and IPv6 wildcard addresses (with SO_REUSEADDR, as most do).
	Bindable bool `json:"bindable"`
	// Ephemeral is the kernel's range for outgoing connections' local
	// ports (net.ipv4.ip_local_port_range).
	Ephemeral RangeFact `json:"ephemeral"`
	// Reserved is the kernel's reserved ports
	// (net.ipv4.ip_local_reserved_ports), which no outgoing connection
	// takes.
	Reserved ListFact `json:"kernel_reserved"`
	// Managed is gracectl's managed range.
	Managed RangeFact `json:"managed"`
}

// RangeFact is a range and whether it holds the port.
type RangeFact struct {
	Range    registry.Range `json:"range"`
	Contains bool           `json:"contains"`
	Known    bool           `json:"known"` // false: it could not be read
}

// ListFact is a port list and whether it holds the port.
type ListFact struct {
	List     string `json:"list"`
	Contains bool   `json:"contains"`
	Known    bool   `json:"known"`
}

// Socket is one socket on the port.
type Socket struct {
	Proto  string `json:"proto"`  // tcp, udp
	Family string `json:"family"` // ipv4, ipv6
	State  string `json:"state"`  // LISTEN, ESTAB, TIME-WAIT, ... (UDP: UNCONN, ESTAB)
	Local  string `json:"local"`  // 127.0.0.1:8000, [::]:8000
	// Wildcard: bound to every address of its family (0.0.0.0 or ::).
	Wildcard bool   `json:"wildcard"`
	Remote   string `json:"remote,omitzero"`
	// ExpiresSeconds is what is left of the socket's timer: for
	// TIME-WAIT, until the kernel drops it.
	ExpiresSeconds float64 `json:"expires_seconds,omitzero"`
	User           string  `json:"user,omitzero"`
	// NetNS is the network namespace (its inode), for a socket of
	// another namespace.
	NetNS uint64 `json:"net_ns,omitzero"`
	// Processes hold the socket open (none for TIME-WAIT; none when they
	// cannot be seen: another user's, without root).
	Processes []Process `json:"processes"`
}

// Listening reports whether the socket is a TCP listener or a bound UDP
// socket without a peer: what serves the port.
func (s Socket) Listening() bool {
	return s.State == "LISTEN" || (s.Proto == "udp" && s.State == "UNCONN")
}

// Process is a process holding a socket, with its parents up to the first
// known supervisor.
type Process struct {
	PID     int    `json:"pid"`
	Command string `json:"command,omitzero"`
	User    string `json:"user,omitzero"`
	// Parents are its parent, grandparent, ... up to Supervisor.
	Parents    []Parent    `json:"parents"`
	Supervisor *Supervisor `json:"supervisor,omitzero"`
	// Container publishes the port, when the process is its engine's
	// proxy.
	Container *container.Info `json:"container,omitzero"`
}

// Name is the process's program: the base name of its command's first
// word.
func (p Process) Name() string {
	first, _, _ := strings.Cut(p.Command, " ")
	if i := strings.LastIndexByte(first, '/'); i >= 0 {
		first = first[i+1:]
	}
	if first == "" {
		return "?"
	}
	return first
}

// Parent is one process of a parent chain.
type Parent struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
}

// Supervisor is the process manager a process runs under: "gracectl
// run", "container" (an engine's shim), "systemd" (Name is the unit), or
// "init" (pid 1 that is not systemd).
type Supervisor struct {
	Kind string `json:"kind"`
	PID  int    `json:"pid"`
	Name string `json:"name,omitzero"`
}

// MaxSockets bounds the sockets listed: a busy server's accepted
// connections are counted beyond it, not listed.
const MaxSockets = 100

// Query is what Explain looks at.
type Query struct {
	Port     int
	Registry *registry.Registry
	Managed  registry.Range
	Engines  *container.Engines // nil: no engine is asked
	// HeldElsewhere is what the host registry holds of the port, when the
	// registry is another one (Store.HeldElsewhere).
	HeldElsewhere []registry.Held
}

// Explain gathers every fact about the port and decides whether it is
// free.
func Explain(ctx context.Context, q Query) *Why {
	w := &Why{Port: q.Port, Sockets: []Socket{}, OtherNamespaces: []Socket{}, Reasons: []string{}}
	w.Allocation = q.Registry.Get(q.Port)
	for _, h := range q.HeldElsewhere {
		if h.Port == q.Port {
			w.HeldElsewhere = &h
		}
	}
	procs := probe.TakeProcessTable()
	if a := w.Allocation; a != nil && a.PID > 0 {
		if local, l := probe.Resolve(a.Owner()); l == probe.Running {
			p := describe(procs, local)
			w.Owner = &p
		}
	}
	w.addSockets(ctx, q, procs)
	w.addRangeFacts(q)
	Decide(w)
	return w
}

// addSockets adds every socket on the port, in this network namespace
// and in the others that can be seen, with the processes holding each.
func (w *Why) addSockets(ctx context.Context, q Query, procs *probe.ProcessTable) {
	own, _ := probe.SocketsOnPort(q.Port)
	others := map[uint64][]probe.Socket{}
	for ns, pid := range probe.OtherNetNamespaces() {
		if s, err := probe.SocketsOnPortIn(pid, q.Port); err == nil && len(s) > 0 {
			others[ns] = s
		}
	}
	inodes := map[uint64]bool{}
	for _, s := range own {
		inodes[s.Inode] = s.Inode != 0
	}
	for _, ss := range others {
		for _, s := range ss {
			inodes[s.Inode] = s.Inode != 0
		}
	}
	holders := probe.SocketOwners(inodes)
	lk := q.Engines.Lookup()
	cache := map[int]Process{}
	convert := func(s probe.Socket, ns uint64) Socket {
		out := socketOf(s, ns)
		for _, pid := range holders[s.Inode] {
			p, ok := cache[pid]
			if !ok {
				p = describe(procs, pid)
				if out.Listening() && ns == 0 {
					p.Container = lk.Publisher(ctx, q.Port, pid)
				}
				cache[pid] = p
			}
			out.Processes = append(out.Processes, p)
		}
		return out
	}
	sortSockets(own)
	for _, s := range own {
		if len(w.Sockets) >= MaxSockets && !s.Listening() {
			w.Omitted++
			continue
		}
		w.Sockets = append(w.Sockets, convert(s, 0))
	}
	nss := make([]uint64, 0, len(others))
	for ns := range others {
		nss = append(nss, ns)
	}
	slices.Sort(nss)
	for _, ns := range nss {
		sortSockets(others[ns])
		for _, s := range others[ns] {
			if len(w.OtherNamespaces) < MaxSockets {
				w.OtherNamespaces = append(w.OtherNamespaces, convert(s, ns))
			}
		}
	}
}

// addRangeFacts adds whether the port can be bound and which ranges (the
// kernel's ephemeral range, its reserved list, the managed range) cover it.
func (w *Why) addRangeFacts(q Query) {
	w.Bindable = probe.Bindable(q.Port) == nil
	if lo, hi, err := probe.EphemeralRange(); err == nil {
		rg := registry.Range{Start: lo, End: hi}
		w.Ephemeral = RangeFact{Range: rg, Contains: rg.Contains(q.Port), Known: true}
	}
	if l, err := probe.ReservedPorts(); err == nil {
		w.Reserved = ListFact{List: l.String(), Contains: l.Contains(q.Port), Known: true}
	}
	w.Managed = RangeFact{Range: q.Managed, Contains: q.Managed.Contains(q.Port), Known: true}
}

// sortSockets puts listeners first, then TCP before UDP, IPv4 before
// IPv6, by address.
func sortSockets(ss []probe.Socket) {
	rank := func(s probe.Socket) int {
		switch {
		case s.Listening():
			return 0
		case s.Proto == "udp" && s.State == "UNCONN":
			return 1
		case s.TimeWait():
			return 3
		}
		return 2
	}
	slices.SortStableFunc(ss, func(a, b probe.Socket) int {
		if r := rank(a) - rank(b); r != 0 {
			return r
		}
		if a.Proto != b.Proto {
			return strings.Compare(a.Proto, b.Proto)
		}
		if c := a.Local.Compare(b.Local); c != 0 {
			return c
		}
		return a.Remote.Compare(b.Remote)
	})
}

func socketOf(s probe.Socket, ns uint64) Socket {
	fam := "ipv4"
	if s.IPv6() && !s.Local.Addr().Is4In6() {
		fam = "ipv6"
	}
	out := Socket{Proto: s.Proto, Family: fam, State: s.State, Local: addrText(s.Local),
		Wildcard: s.Local.Addr().Unmap().IsUnspecified(), NetNS: ns, Processes: []Process{}}
	if s.Remote.Port() != 0 || !s.Remote.Addr().Unmap().IsUnspecified() {
		out.Remote = addrText(s.Remote)
	}
	if s.Expires > 0 {
		out.ExpiresSeconds = s.Expires.Round(time.Millisecond).Seconds()
	}
	if s.UID >= 0 {
		out.User = probe.UserName(s.UID)
	}
	return out
}

func addrText(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// describe is process pid (in this /proc's view) with its supervisor.
func describe(procs *probe.ProcessTable, pid int) Process {
	p := Process{PID: pid, Command: registry.SafeText(strings.Join(probe.Cmdline(pid), " "), 256), User: probe.ProcessUser(pid), Parents: []Parent{}}
	chain, sup, ok := procs.SupervisorOf(pid)
	for _, a := range chain {
		p.Parents = append(p.Parents, Parent{PID: a.PID, Name: a.Name})
	}
	if ok {
		p.Supervisor = &Supervisor{Kind: sup.Kind, PID: sup.PID, Name: sup.Name}
	}
	return p
}

// Decide says whether the port is free from what Explain gathered, and
// why not: an allocation holds it, a socket of this network namespace
// other than a TIME-WAIT uses it, or a TCP server could not bind it. A
// TIME-WAIT keeps a server that sets SO_REUSEADDR (most do) off the port
// only if its own socket did not set it, as an outgoing connection's
// usually does not: the bind test tells which. A socket in another
// network namespace never does.
func Decide(w *Why) {
	w.Reasons = []string{}
	if a := w.Allocation; a != nil {
		w.Reasons = append(w.Reasons, fmt.Sprintf("gracectl allocated it to %s (%s)", a.Label(), a.HealthStatus))
	}
	if h := w.HeldElsewhere; h != nil {
		w.Reasons = append(w.Reasons, fmt.Sprintf("the host registry %s allocated it to %s, and this registry does not hand it out", h.Registry, registry.Label(h.ServiceName, h.PortName)))
	}
	// Listeners first; connections are reasons of their own only where
	// nothing listens (a server's accepted connections say nothing more),
	// three at most.
	var listeners, conns []Socket
	for _, s := range w.Sockets {
		switch {
		case s.Listening():
			listeners = append(listeners, s)
		case s.State != "TIME-WAIT":
			conns = append(conns, s)
		}
	}
	used := len(listeners)+len(conns)+w.Omitted > 0
	for _, s := range listeners {
		w.Reasons = append(w.Reasons, s.Sentence())
	}
	if len(listeners) == 0 {
		for i, s := range conns {
			if i == 3 {
				break
			}
			w.Reasons = append(w.Reasons, s.Sentence())
		}
		if more := len(conns) - 3 + w.Omitted; len(conns) >= 3 && more > 0 {
			w.Reasons = append(w.Reasons, fmt.Sprintf("%d more connections use it", more))
		}
	}
	if !w.Bindable && !used {
		// A TIME-WAIT keeps the port from a server only when its socket
		// did not set SO_REUSEADDR (an outgoing connection's, usually):
		// the bind test tells.
		for _, s := range w.Sockets {
			if s.State == "TIME-WAIT" {
				w.Reasons = append(w.Reasons, s.Sentence()+", and keeps a server off the port until then (its socket did not set SO_REUSEADDR)")
			}
		}
		if len(w.Reasons) == 0 {
			w.Reasons = append(w.Reasons, "a TCP server cannot bind it on the IPv4 and IPv6 wildcard addresses, though no socket that holds it can be seen")
		}
	}
	w.Free = len(w.Reasons) == 0
}

// Sentence says in words what the socket does with the port.
func (s Socket) Sentence() string {
	var b strings.Builder
	switch {
	case s.State == "LISTEN":
		fmt.Fprintf(&b, "%s listens on %s (TCP, %s)", s.who(), s.Local, s.where())
	case s.Proto == "udp" && s.State == "UNCONN":
		fmt.Fprintf(&b, "%s is bound to %s (UDP, %s)", s.who(), s.Local, s.where())
	case s.State == "TIME-WAIT":
		fmt.Fprintf(&b, "a closed TCP connection %s → %s waits in TIME-WAIT", s.Local, s.Remote)
		if s.ExpiresSeconds > 0 {
			fmt.Fprintf(&b, " for %s more", time.Duration(s.ExpiresSeconds*float64(time.Second)).Round(time.Second))
		}
	default:
		fmt.Fprintf(&b, "%s has a %s connection %s → %s (%s)", s.who(), strings.ToUpper(s.Proto), s.Local, s.Remote, s.State)
	}
	return b.String()
}

func (s Socket) who() string {
	if len(s.Processes) == 0 {
		return Unseen()
	}
	var names []string
	for _, p := range s.Processes {
		names = append(names, fmt.Sprintf("pid %d (%s)", p.PID, p.Name()))
	}
	return strings.Join(names, ", ")
}

func (s Socket) where() string {
	switch {
	case s.Wildcard && s.Family == "ipv6":
		return "every IPv6 address, and IPv4 unless it is IPv6-only"
	case s.Wildcard:
		return "every IPv4 address"
	case strings.HasPrefix(s.Local, "127.") || strings.HasPrefix(s.Local, "[::1]"):
		return "loopback only"
	}
	return "this address only"
}

// Unseen names the holder of a socket that no process this user can look
// into holds: another user's process, when not root; as root, one of
// another PID namespace's (a container's, a VM agent's) or none (the
// kernel's).
func Unseen() string {
	if os.Geteuid() == 0 {
		return "no process that root can see here (the kernel's, or one in another PID namespace)"
	}
	return "a process this user cannot see (run as root to name it)"
}
