// Package probe owns looking at the live system: processes (identity by PID
// and start time, names, ancestry), sockets (can a port be bound, who listens
// on it) and health endpoints. It never prints and never changes the
// registry; the watchdog cycle that turns probe results into registry
// changes lives in probe/watchdog.
//
// Linux is the first-class platform: process start times come from
// /proc/PID/stat, sockets from the kernel's sock_diag netlink interface
// (else /proc/net/tcp{,6}) and their owners from /proc/*/fd. On macOS start times come from sysctl kern.proc.pid, and a
// port is seen as listening when a TCP connect to 127.0.0.1 or ::1 succeeds
// (its owner is then unknown). Elsewhere the start time is unknown and a
// process is identified by PID alone.
package probe

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"sync"
	"syscall"

	ps "github.com/mitchellh/go-ps"
)

// Identity names one process across time: a PID is reused, a PID together
// with its start time and boot is not.
type Identity struct {
	PID   int
	Start uint64 // platform start stamp, 0 if unknown
	Boot  string // boot ID (Linux), "" if unknown
	// PIDNS is the PID namespace PID belongs to, NetNS the network
	// namespace the process listens in (Linux inodes; 0 if unknown).
	PIDNS uint64
	NetNS uint64
}

// ErrNoProcess means the PID names no running process.
var ErrNoProcess = errors.New("no such process")

// Identify returns the identity of the running process pid, a PID in this
// process's own PID namespace (what a user types, or os/exec returns).
// Where /proc shows another namespace's processes (gracectl runs in `unshare
// --pid --fork` without --mount-proc), /proc/pid is someone else: the
// process is found by its NSpid instead, and refused with a ForeignPIDError
// when it cannot be.
func Identify(pid int) (Identity, error) {
	if pid <= 0 {
		return Identity{}, ErrNoProcess
	}
	if procIsOwn() {
		return IdentifyLocal(pid)
	}
	self, _ := SelfNamespaces()
	local, found, _ := localPID(pid, self)
	if !found {
		return Identity{}, &ForeignPIDError{PID: pid}
	}
	return IdentifyLocal(local)
}

// IdentifyHere is Identify for a process that may live in a PID namespace
// below this one, such as a container's main process: its PID is recorded
// as this process sees it, so with this process's PID namespace, and no
// network namespace is recorded (a container's published port is served in
// this one, by its engine's proxy).
func IdentifyHere(pid int) (Identity, error) {
	id, err := IdentifyLocal(pid)
	if err != nil {
		return Identity{}, err
	}
	id.PID = pid // not its own namespace's number, which IdentifyLocal records
	id.PIDNS, _ = SelfNamespaces()
	id.NetNS = 0
	return id, nil
}

// IdentifyLocal is Identify for a PID in this /proc's view: what
// /proc/locks, /proc/net and /proc/*/fd name. The identity records the PID
// as the process's own namespace numbers it (the last NSpid), with that
// namespace, so it means the same process wherever it is read.
func IdentifyLocal(local int) (Identity, error) {
	if local <= 0 {
		return Identity{}, ErrNoProcess
	}
	start, err := processStart(local)
	if err != nil {
		return Identity{}, err
	}
	pidNS, netNS := namespacesOf(local)
	pid := local
	if inner, ok := innermostPID(local); ok && pidNS != 0 {
		pid = inner
	}
	return Identity{PID: pid, Start: start, Boot: BootID(), PIDNS: pidNS, NetNS: netNS}, nil
}

// ForeignPIDError is a PID given in this process's PID namespace that
// cannot be found: /proc here is another namespace's, where that number is
// another process.
type ForeignPIDError struct{ PID int }

func (e *ForeignPIDError) Error() string {
	return fmt.Sprintf("pid %d is not a process of this PID namespace: gracectl runs in a PID namespace whose /proc shows another namespace's processes (as under unshare --pid --fork without --mount-proc), where pid %d is a different process; give the PID as that /proc numbers it, or mount a /proc of this namespace (unshare --mount-proc)", e.PID, e.PID)
}

// Liveness is what can be told of a recorded owner.
type Liveness int

const (
	Dead    Liveness = iota // gone, or its PID now names another process
	Running                 // alive, the same process
	Unknown                 // cannot be told from here (its PID namespace cannot be looked into)
)

// Resolve finds the owner id describes in this process's view of the
// system and tells whether it runs. An owner recorded in another PID
// namespace is found by its NSpid; local is its PID here (0 unless
// Running). Where that cannot be done — another host's /proc, processes
// this user may not look at, a namespace above this one — the answer is
// Unknown, never Dead: no port is released on PID evidence alone.
func Resolve(id Identity) (local int, l Liveness) { return resolve(id, processStart) }

// resolve is Resolve with the start time of a PID from startOf.
func resolve(id Identity, startOf func(pid int) (uint64, error)) (local int, l Liveness) {
	if id.PID <= 0 {
		return 0, Dead
	}
	if id.Boot != "" && BootID() != "" && id.Boot != BootID() {
		return 0, Dead
	}
	pid := id.PID
	// The PID is the process's own namespace's number: it is looked up
	// directly only when that namespace is the one /proc shows.
	if self, _ := SelfNamespaces(); id.PIDNS != 0 && self != 0 && (id.PIDNS != self || !procIsOwn()) {
		p, found, complete := localPID(id.PID, id.PIDNS)
		switch {
		case found:
			pid = p
		case complete:
			return 0, Dead
		default:
			return 0, Unknown
		}
	}
	start, err := startOf(pid)
	if err != nil {
		return 0, Dead
	}
	if id.Start == 0 || start == 0 || start == id.Start {
		return pid, Running
	}
	return 0, Dead
}

// ListeningInOwnNetNS reports whether the process local (a PID in this
// view) has a LISTEN socket for port in its network namespace, for an
// owner that listens in a namespace other than the watchdog's.
func ListeningInOwnNetNS(local, port int) (bool, error) { return listeningInNetNS(local, port) }

// Alive reports whether the process id describes is known to be running:
// the PID exists (mapped from its namespace) and, where its start time was
// recorded, it started at that time in this boot. A reused PID is not
// alive; an owner that cannot be looked at (Unknown) is not either, so
// callers deciding to release use Resolve.
func Alive(id Identity) bool {
	_, l := Resolve(id)
	return l == Running
}

var bootOnce sync.Once
var bootID string

// BootID is the kernel's boot ID on Linux, "" elsewhere.
func BootID() string {
	bootOnce.Do(func() { bootID = readBootID() })
	return bootID
}

// ProcessName is the executable name of pid, "" if unknown.
func ProcessName(pid int) string {
	p, err := ps.FindProcess(pid)
	if err != nil || p == nil {
		return ""
	}
	return p.Executable()
}

// Ancestors lists pid's ancestors, nearest first (parent, grandparent, …),
// stopping before init (PID 1), which is everyone's ancestor.
func Ancestors(pid int) []int {
	var out []int
	seen := map[int]bool{pid: true}
	for {
		p, err := ps.FindProcess(pid)
		if err != nil || p == nil {
			return out
		}
		pid = p.PPid()
		if pid <= 1 || seen[pid] {
			return out
		}
		seen[pid] = true
		out = append(out, pid)
	}
}

// ProcessTable is one snapshot of the process table: names, parents and,
// on Linux, start times, read in one pass over /proc.
type ProcessTable struct {
	parent map[int]int
	name   map[int]string
	start  map[int]uint64 // live processes only (no zombies); empty off Linux
}

// TakeProcessTable reads the process table once.
func TakeProcessTable() *ProcessTable {
	t := &ProcessTable{parent: map[int]int{}, name: map[int]string{}, start: map[int]uint64{}}
	readProcessTable(t)
	return t
}

// Resolve is probe.Resolve with the start times of the snapshot: a PID it
// does not hold (a process started since, or a platform without start
// times in the table) is looked up in the system.
func (t *ProcessTable) Resolve(id Identity) (local int, l Liveness) {
	return resolve(id, func(pid int) (uint64, error) {
		if s, ok := t.start[pid]; ok {
			return s, nil
		}
		return processStart(pid)
	})
}

// Name is pid's executable name, "" if unknown.
func (t *ProcessTable) Name(pid int) string { return t.name[pid] }

// IsDescendant reports whether pid is ancestor or one of its descendants.
func (t *ProcessTable) IsDescendant(pid, ancestor int) bool {
	for i := 0; pid > 0 && i < 4096; i++ {
		if pid == ancestor {
			return true
		}
		next, ok := t.parent[pid]
		if !ok || next == pid {
			return false
		}
		pid = next
	}
	return false
}

// Self is this process's identity.
func Self() Identity {
	id, _ := Identify(os.Getpid())
	return id
}

// ProcessUser names the user a process runs as (from the owner of
// /proc/PID), or its uid when the name is unknown, or "" without /proc.
func ProcessUser(pid int) string {
	n, ok := ProcessUID(pid)
	if !ok {
		return ""
	}
	return UserName(n)
}

// UserName names the user uid, or gives the number when it has no name.
func UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// ProcessUID is the uid a process runs as (the owner of /proc/PID); false
// without /proc or when the process is gone.
func ProcessUID(pid int) (int, bool) {
	info, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return -1, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}

// Children returns the PIDs whose parent is pid.
func (t *ProcessTable) Children(pid int) []int {
	var out []int
	for p, parent := range t.parent {
		if parent == pid && p != pid {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}

// Descendants returns every process below pid: its children, theirs, and
// so on (not pid itself).
func (t *ProcessTable) Descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 && len(out) < 4096 {
		for _, c := range t.Children(queue[0]) {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
		queue = queue[1:]
	}
	return out
}
