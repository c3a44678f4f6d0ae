package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
)

// Held is a port that another registry of this host holds: the host
// registry, seen from a private or project registry. Allocation here skips
// it; status and check name it.
type Held struct {
	Port        int    `json:"port"`
	ServiceName string `json:"service_name"`
	PortName    string `json:"port_name,omitzero"`
	PID         int    `json:"pid,omitzero"`
	Registry    string `json:"registry"` // the state root that holds it
}

// HeldElsewhere lists the ports in rg that the registries under s.Elsewhere
// hold, sorted by port. Each is read as every reader reads, without its lock
// (a writer there is never held up, nor this one by it). A registry that
// does not exist holds nothing; one that cannot be read (permission, a
// corrupt file) holds nothing that can be known, and its error is returned
// beside what the others hold.
func (s *Store) HeldElsewhere(ctx context.Context, rg Range) ([]Held, error) {
	var held []Held
	var errs []error
	for _, root := range s.Elsewhere {
		if SameRoot(root, s.Root) {
			continue
		}
		r, err := Open(root, s.LockTimeout).Read(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range r.Sorted() {
			if rg.Contains(a.Port) && !slices.ContainsFunc(held, func(h Held) bool { return h.Port == a.Port }) {
				held = append(held, Held{Port: a.Port, ServiceName: a.ServiceName, PortName: a.PortName, PID: int(a.PID), Registry: root})
			}
		}
	}
	slices.SortFunc(held, func(a, b Held) int { return a.Port - b.Port })
	return held, errors.Join(errs...)
}

// heldElsewhereMap is HeldElsewhere as a set, for allocation: an unreadable
// registry elsewhere does not stop this one from allocating (the bind test
// still guards the ports its services listen on).
func (s *Store) heldElsewhereMap(rg Range) map[int]Held {
	if len(s.Elsewhere) == 0 {
		return nil
	}
	held, _ := s.HeldElsewhere(context.Background(), rg)
	m := make(map[int]Held, len(held))
	for _, h := range held {
		m[h.Port] = h
	}
	return m
}

// SameRoot tells whether two state roots are one folder: the same file
// where both exist, else the same clean absolute path.
func SameRoot(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}
