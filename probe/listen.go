package probe

import (
	"context"
	"slices"
	"sort"
	"time"
)

// DialTimeout bounds the connect used to see whether a port listens where
// /proc cannot be read.
const DialTimeout = 300 * time.Millisecond

// Snapshot is one look at the host's listening TCP sockets. On Linux it
// comes from sock_diag netlink (else /proc/net/tcp{,6}), so nothing
// connects to the services; the
// PIDs behind each port are looked up lazily, since that means reading
// every /proc/*/fd.
type Snapshot struct {
	ports map[int][]uint64 // nil: no /proc; fall back to connecting
}

// TakeSnapshot reads the socket tables once.
func TakeSnapshot() *Snapshot {
	if !ProcNetAvailable() {
		return &Snapshot{}
	}
	ports, err := Listeners()
	if err != nil {
		return &Snapshot{}
	}
	return &Snapshot{ports: ports}
}

// FromTables reports whether the snapshot answers Listening from the
// kernel's socket tables, without connecting.
func (s *Snapshot) FromTables() bool { return s.ports != nil }

// Listening reports whether anything listens on port, on any address.
func (s *Snapshot) Listening(ctx context.Context, port int) bool {
	if s.ports == nil {
		return DialListening(ctx, port, DialTimeout)
	}
	return len(s.ports[port]) > 0
}

// Owners returns the PIDs holding port's listening sockets, sorted, or nil
// where they cannot be found (no /proc, or another user's process when not
// running as root).
func (s *Snapshot) Owners(port int) []int { return s.OwnersOf([]int{port})[port] }

// OwnersOf is Owners for many ports with one pass over /proc/*/fd.
func (s *Snapshot) OwnersOf(ports []int) map[int][]int {
	out := map[int][]int{}
	if s.ports == nil {
		return out
	}
	want := map[uint64]bool{}
	portOf := map[uint64]int{}
	for _, p := range ports {
		for _, ino := range s.ports[p] {
			want[ino] = true
			portOf[ino] = p
		}
	}
	if len(want) == 0 {
		return out
	}
	for ino, pids := range SocketOwners(want) {
		p := portOf[ino]
		for _, pid := range pids {
			if !slices.Contains(out[p], pid) {
				out[p] = append(out[p], pid)
			}
		}
	}
	for p := range out {
		sort.Ints(out[p])
	}
	return out
}

// ListeningIn returns the ports from lo to hi that something listens on,
// in order. Without /proc it connects to each (a refused connect on
// loopback answers at once).
func (s *Snapshot) ListeningIn(ctx context.Context, lo, hi int) []int {
	var out []int
	if s.ports == nil {
		for p := lo; p <= hi; p++ {
			if DialListening(ctx, p, DialTimeout) {
				out = append(out, p)
			}
		}
		return out
	}
	for p, inodes := range s.ports {
		if p >= lo && p <= hi && len(inodes) > 0 {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}
