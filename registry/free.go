package registry

import "context"

// FreeEvent is written when `gracectl free` stops the processes listening
// on a port (or the container publishing it): who asked, why, what was
// stopped and how.
type FreeEvent struct {
	Timestamp   Time     `json:"timestamp"`
	Action      string   `json:"action"` // "free"
	Port        int      `json:"port"`
	ServiceName string   `json:"service_name,omitzero"` // the allocation's, if the port is allocated
	PIDs        []int    `json:"pids"`                  // the processes stopped, as this host numbers them
	Commands    []string `json:"commands,omitempty"`    // their command lines, in PIDs' order
	// Container is the container stopped through its engine, when the
	// listener was its engine's proxy.
	Container *Container `json:"container,omitzero"`
	// Signal is how they were stopped: SIGTERM, SIGKILL (after the grace
	// time), or "engine stop" for a container.
	Signal   string `json:"signal"`
	Released bool   `json:"released,omitzero"` // the allocation was released with it
	Forced   bool   `json:"forced,omitzero"`   // a live owner other than the caller's: --force
	By       string `json:"by"`                // "cli"
	ByPID    int    `json:"by_pid,omitzero"`
	ByUser   string `json:"by_user,omitzero"`
	Reason   string `json:"reason"`
	Seq      uint64 `json:"seq"`
}

func (e *FreeEvent) setSeq(n uint64) { e.Seq = n }

// HeldBy names the process that holds a against callers (the caller and
// its ancestors), 0 if none: its owner when that may still run, or the
// supervisor of a reservation (`gracectl run` before its command is
// registered). Releasing the port, or stopping its listener with `free`,
// then takes --force.
func HeldBy(a *Allocation, callers []int) int { return heldBy(a, callers) }

// RecordFree logs ev. When the port still holds the allocation id (not
// "": the port was allocated) and nothing holds it any more (its owner
// was stopped and no `gracectl run` supervises it), the allocation is
// released in the same change, by "free": a stopped owner's port is not
// left for the watchdog to find. A container's allocation is left to the
// rules of its engine's events (one kept until the container is removed
// stays).
func (s *Store) RecordFree(ctx context.Context, ev *FreeEvent, id string) error {
	return s.Update(ctx, func(r *Registry, tx *Tx) error {
		ev.Timestamp, ev.Action, ev.ByPID = tx.Now(), "free", ownPID()
		a := r.Get(ev.Port)
		if id != "" && a != nil && a.ID == id && a.Container == nil && heldBy(a, nil) == 0 && !a.Supervised() {
			ev.Released = true
			tx.Log(ev)
			tx.Release(r, a, "free", ev.ByUser, ev.Reason)
			return nil
		}
		tx.Log(ev)
		return nil
	})
}
