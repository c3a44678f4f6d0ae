// Package probe owns looking at the live system: processes (identity by PID
// and start time, names, ancestry), sockets (can a port be bound, who listens
// on it) and health endpoints. It never prints and never changes the
// registry; the watchdog cycle that turns probe results into registry
// changes lives in probe/watchdog.
//
// Linux is the first-class platform: process start times come from
// /proc/PID/stat, listeners from /proc/net/tcp{,6} and their owners from
// /proc/*/fd. On macOS start times come from sysctl kern.proc.pid, and a
// port is seen as listening when a TCP connect to 127.0.0.1 or ::1 succeeds
// (its owner is then unknown). Elsewhere the start time is unknown and a
// process is identified by PID alone.
package probe

import (
	"errors"
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
}

// ErrNoProcess means the PID names no running process.
var ErrNoProcess = errors.New("no such process")

// Identify returns the identity of the running process pid.
func Identify(pid int) (Identity, error) {
	if pid <= 0 {
		return Identity{}, ErrNoProcess
	}
	start, err := processStart(pid)
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: pid, Start: start, Boot: BootID()}, nil
}

// Alive reports whether the process id describes is still running: the PID
// exists and, where its start time was recorded, it started at that time in
// this boot. A reused PID is not alive.
func Alive(id Identity) bool {
	if id.PID <= 0 {
		return false
	}
	if id.Boot != "" && BootID() != "" && id.Boot != BootID() {
		return false
	}
	start, err := processStart(id.PID)
	if err != nil {
		return false
	}
	return id.Start == 0 || start == 0 || start == id.Start
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

// ProcessTable is one snapshot of the process table: names and parents.
type ProcessTable struct {
	parent map[int]int
	name   map[int]string
}

// TakeProcessTable reads the process table once (go-ps).
func TakeProcessTable() *ProcessTable {
	t := &ProcessTable{parent: map[int]int{}, name: map[int]string{}}
	procs, err := ps.Processes()
	if err != nil {
		return t
	}
	for _, p := range procs {
		t.parent[p.Pid()] = p.PPid()
		t.name[p.Pid()] = p.Executable()
	}
	return t
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
	info, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return ""
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	uid := strconv.Itoa(int(st.Uid))
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
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
