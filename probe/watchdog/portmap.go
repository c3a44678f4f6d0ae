package watchdog

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// The range port by port, for the dashboard's map: each port's state in
// one word, and for the ports in use the processes behind them as they are
// now (the owner, alive or gone, and the listener when it is someone else).

// Map states: a port is free, or one of these.
const (
	CellFree      = "free"
	CellReserved  = "reserved"
	CellStarting  = "starting"
	CellActive    = "active"
	CellUnhealthy = "unhealthy" // unhealthy, not_listening or dead
	CellOrphaned  = "orphaned"
	CellUnmanaged = "unmanaged" // a listener without an allocation
)

// CellStates are the map's states in the order the dashboard's legend
// gives them.
var CellStates = []string{CellFree, CellReserved, CellStarting, CellActive, CellUnhealthy, CellOrphaned, CellUnmanaged}

// Proc is a process behind a port, as seen now.
type Proc struct {
	PID     int    `json:"pid"`
	Alive   bool   `json:"alive"`
	Command string `json:"command,omitzero"`
	User    string `json:"user,omitzero"`
}

// Cell is a port of the range that is not free.
type Cell struct {
	Port         int    `json:"port"`
	State        string `json:"state"`
	HealthStatus string `json:"health_status,omitzero"`
	ServiceName  string `json:"service_name,omitzero"`
	PortName     string `json:"port_name,omitzero"`
	Owner        *Proc  `json:"owner,omitzero"`
	Listener     *Proc  `json:"listener,omitzero"` // when it is not the owner
	Issue        string `json:"issue,omitzero"`
}

// PortMap is GET /api/ports/map: the range's ports that are not free, by
// port (every other port of the range is free), with counts per state.
type PortMap struct {
	Host   string         `json:"host"`
	Range  registry.Range `json:"port_range"`
	Counts map[string]int `json:"counts"`
	Issues int            `json:"issues"`
	Ports  []Cell         `json:"ports"`
}

// CellState is an allocation's state on the map.
func CellState(a *registry.Allocation) string {
	switch {
	case a.HealthStatus == registry.StatusOrphaned:
		return CellOrphaned
	case Troubled(a.HealthStatus):
		return CellUnhealthy
	case a.HealthStatus == registry.StatusActive:
		return CellActive
	case a.HealthStatus == registry.StatusReserved, a.HealthStatus == "" && a.Reserved():
		return CellReserved
	}
	return CellStarting // starting, or not checked yet
}

// BuildMap makes the map of st's range. listeners are the processes
// listening on the ports of troubled or foreign-served allocations, as
// probe.Snapshot.OwnersOf finds them now.
func BuildMap(host string, st *Status, listeners map[int][]int) *PortMap {
	m := &PortMap{Host: host, Range: st.Range, Counts: map[string]int{}, Ports: []Cell{}}
	for _, a := range st.Allocations {
		if st.Range.Contains(a.Port) {
			m.Ports = append(m.Ports, allocationCell(a, listeners[a.Port]))
		}
	}
	for _, u := range st.Unmanaged {
		m.Ports = append(m.Ports, Cell{Port: u.Port, State: CellUnmanaged, Issue: u.Issue(),
			Listener: &Proc{PID: u.PID, Alive: u.PID > 0, Command: u.Command, User: u.User}})
	}
	slices.SortFunc(m.Ports, func(x, y Cell) int { return x.Port - y.Port })
	for _, c := range m.Ports {
		m.Counts[c.State]++
		if c.Issue != "" {
			m.Issues++
		}
	}
	m.Counts[CellFree] = st.Range.Size() - len(m.Ports)
	return m
}

// ListenerPorts are the ports whose listeners BuildMap shows: those of
// allocations with a listener other than the owner, or whose owner is
// gone while the port is served.
func ListenerPorts(st *Status) []int {
	var out []int
	for _, a := range st.Allocations {
		if a.ListenerPID > 0 || a.HealthStatus == registry.StatusOrphaned {
			out = append(out, a.Port)
		}
	}
	return out
}

func allocationCell(a *registry.Allocation, listeners []int) Cell {
	c := Cell{Port: a.Port, State: CellState(a), HealthStatus: a.HealthStatus, ServiceName: a.ServiceName, PortName: a.PortName}
	owner := 0
	if a.PID > 0 {
		var l probe.Liveness
		owner, l = probe.Resolve(a.Owner())
		c.Owner = &Proc{PID: int(a.PID), Alive: l != probe.Dead, Command: registry.SafeText(strings.Join(a.Command, " "), 256)}
	}
	for _, pid := range listeners {
		if pid != owner {
			c.Listener = process(pid)
			break
		}
	}
	if c.Listener == nil && a.ListenerPID > 0 && a.ListenerPID != owner {
		// Not seen now: the one the last cycle recorded, if it still runs.
		c.Listener = process(a.ListenerPID)
		if !c.Listener.Alive {
			c.Listener.Command = a.ListenerName
		}
	}
	c.Issue = cellIssue(a, c.Listener)
	return c
}

// cellIssue says what is wrong with an allocation, from its stored status
// and the listener seen now ("" when nothing is).
func cellIssue(a *registry.Allocation, listener *Proc) string {
	why := ""
	if a.LastError != "" {
		why = ": " + a.LastError
	}
	switch a.HealthStatus {
	case registry.StatusOrphaned:
		if listener != nil {
			return fmt.Sprintf("orphaned: owner pid %d is gone, pid %d still listens", a.PID, listener.PID)
		}
		return fmt.Sprintf("orphaned: owner pid %d is gone, the port still listens", a.PID)
	case registry.StatusDead:
		return fmt.Sprintf("dead: owner pid %d is gone", a.PID)
	case registry.StatusNotListening:
		return "not listening: the owner runs but does not listen"
	case registry.StatusUnhealthy:
		return "unhealthy: failed health checks" + why
	}
	if listener != nil && a.HealthStatus == registry.StatusActive {
		return fmt.Sprintf("served by pid %d, not the owner", listener.PID)
	}
	return ""
}

// process describes pid as it runs now (not Alive when it does not).
func process(pid int) *Proc {
	p := &Proc{PID: pid}
	if cmd := probe.Cmdline(pid); len(cmd) > 0 {
		p.Alive = true
		p.Command = registry.SafeText(strings.Join(cmd, " "), 256)
		p.User = registry.SafeText(probe.ProcessUser(pid), 64)
	}
	return p
}
