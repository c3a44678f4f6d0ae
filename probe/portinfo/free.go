package portinfo

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// Holder is a process holding a listening socket of the port (a TCP
// listener or a bound UDP socket), as observed for `free`.
type Holder struct {
	PID     int    `json:"pid"` // in this /proc's view
	Start   uint64 `json:"-"`   // 0: it cannot be identified
	Parent  int    `json:"-"`
	Command string `json:"command,omitzero"`
	User    string `json:"user,omitzero"`
	UID     int    `json:"-"`
	Kernel  bool   `json:"-"`
	// Container publishes the port, when the holder is its engine's proxy.
	Container *container.Info `json:"container,omitzero"`
}

// FreeObservation is what `free` sees of the port before it decides.
type FreeObservation struct {
	Port       int
	Allocation *registry.Allocation
	// Sockets counts the listening sockets; Unseen those whose holder
	// cannot be seen (another user's, without root).
	Sockets, Unseen int
	Holders         []Holder
	// Self is gracectl's PID; Callers are it and its ancestors, who may
	// free their own allocation without Force.
	Self    int
	Callers []int
	Force   bool
}

// FreePlan is what `free` does: stop Stop (SIGTERM, then SIGKILL to
// whatever of All still runs after the grace time), or the container
// through its engine.
type FreePlan struct {
	Port      int                  `json:"port"`
	Nothing   bool                 `json:"nothing"` // nothing listens: there is nothing to do
	Stop      []Holder             `json:"stop"`    // the processes sent SIGTERM: the topmost holders
	All       []Holder             `json:"-"`       // every holder, SIGKILLed if it outlives the grace time
	Container *container.Info      `json:"container,omitzero"`
	Alloc     *registry.Allocation `json:"-"`
	Forced    bool                 `json:"forced"` // --force was needed
}

// RefusedError says why `free` will not stop the port's processes.
type RefusedError struct {
	Msg  string
	Hint string
}

func (e *RefusedError) Error() string { return e.Msg }

// ObserveFree looks at who listens on port: the listening sockets, the
// processes holding them (their identity, parent, user) and, for an
// engine's proxy, the container that publishes the port.
func ObserveFree(ctx context.Context, port int, r *registry.Registry, eng *container.Engines) (FreeObservation, error) {
	obs := FreeObservation{Port: port, Allocation: r.Get(port)}
	ss, err := probe.SocketsOnPort(port)
	if err != nil {
		return obs, err
	}
	inodes := map[uint64]bool{}
	for _, s := range ss {
		if s.Listening() || (s.Proto == "udp" && s.State == "UNCONN") {
			obs.Sockets++
			inodes[s.Inode] = true
		}
	}
	owners := probe.SocketOwners(inodes)
	obs.Unseen = len(inodes) - len(owners)
	procs := probe.TakeProcessTable()
	lk := eng.Lookup()
	seen := map[int]bool{}
	for _, pids := range owners {
		for _, pid := range pids {
			if seen[pid] {
				continue
			}
			seen[pid] = true
			h := Holder{PID: pid, Parent: procs.Parent(pid), UID: -1,
				Command: registry.SafeText(strings.Join(probe.Cmdline(pid), " "), 256), User: probe.ProcessUser(pid)}
			if info, err := probe.Inspect(pid, true); err == nil {
				h.Start, h.Kernel, h.UID = info.ID.Start, info.Kernel, info.UID
			}
			h.Container = lk.Publisher(ctx, port, pid)
			obs.Holders = append(obs.Holders, h)
		}
	}
	slices.SortFunc(obs.Holders, func(a, b Holder) int { return a.PID - b.PID })
	return obs, nil
}

// DecideFree turns what was seen into a plan, or refuses: a holder that
// cannot be seen or identified by PID and start time, pid 1, gracectl
// itself or a kernel thread is never stopped; a port gracectl allocated
// whose owner is alive and not the caller needs Force, as release does.
// Of the holders, those whose parent holds the socket too (a pre-fork
// server's workers) are not sent SIGTERM themselves: their parent is,
// and they are SIGKILLed with it if they outlive the grace time.
func DecideFree(obs FreeObservation) (FreePlan, error) {
	plan := FreePlan{Port: obs.Port, Alloc: obs.Allocation, Stop: []Holder{}}
	if obs.Sockets == 0 {
		plan.Nothing = true
		return plan, nil
	}
	if obs.Unseen > 0 || len(obs.Holders) == 0 {
		return plan, &RefusedError{Msg: fmt.Sprintf("port %d is held by %s; gracectl stops only what it can identify", obs.Port, Unseen())}
	}
	for _, h := range obs.Holders {
		switch {
		case h.PID == 1:
			return plan, &RefusedError{Msg: fmt.Sprintf("port %d is held by pid 1 (%s), which gracectl never stops", obs.Port, h.Command)}
		case h.PID == obs.Self:
			return plan, &RefusedError{Msg: fmt.Sprintf("port %d is held by this gracectl (pid %d) itself", obs.Port, h.PID)}
		case h.Kernel:
			return plan, &RefusedError{Msg: fmt.Sprintf("port %d is held by kernel thread %d (%s), which cannot be stopped", obs.Port, h.PID, h.Command)}
		case h.Start == 0:
			return plan, &RefusedError{Msg: fmt.Sprintf("pid %d, listening on port %d, cannot be identified by its start time (it may have just ended); nothing was stopped", h.PID, obs.Port),
				Hint: "run gracectl why " + fmt.Sprint(obs.Port) + " to see who holds it now"}
		}
		if h.Container != nil && plan.Container == nil {
			plan.Container = h.Container
		}
	}
	if a := obs.Allocation; a != nil {
		if holder := registry.HeldBy(a, obs.Callers); holder > 0 {
			if !obs.Force {
				return plan, &RefusedError{Msg: fmt.Sprintf("port %d is allocated to %s, whose owner pid %d is still running and is not the caller", obs.Port, a.Label(), holder),
					Hint: "use --force to stop it anyway, as with release"}
			}
			plan.Forced = true
		}
	}
	holds := map[int]bool{}
	for _, h := range obs.Holders {
		holds[h.PID] = true
	}
	for _, h := range obs.Holders {
		if !holds[h.Parent] {
			plan.Stop = append(plan.Stop, h)
		}
	}
	plan.All = obs.Holders
	return plan, nil
}
