package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/probe"
)

// WatchdogFile holds the watchdog's persisted state, beside the registry.
const WatchdogFile = "watchdog.json"

// DefaultInterval is the seed's watchdog interval.
const DefaultInterval = 30 * time.Second

// WatchdogState is what a running watchdog records after every cycle.
type WatchdogState struct {
	Running             bool    `json:"running"`
	PID                 int     `json:"pid,omitzero"`
	PIDStart            uint64  `json:"pid_start,omitzero"`
	BootID              string  `json:"boot_id,omitzero"`
	StartedAt           Time    `json:"started_at,omitzero"`
	StoppedAt           Time    `json:"stopped_at,omitzero"`
	IntervalSeconds     float64 `json:"check_interval_seconds"`
	ChecksPerformed     int64   `json:"checks_performed"`
	IssuesDetected      int64   `json:"issues_detected"`
	StaleCleaned        int64   `json:"stale_cleaned"`
	MonitoredPorts      int     `json:"monitored_ports"`
	LastCycleAt         Time    `json:"last_cycle_at,omitzero"`
	LastCycleDurationMS float64 `json:"last_cycle_duration_ms"`
	LastSummary         string  `json:"last_summary,omitzero"`
	API                 string  `json:"api,omitzero"`
}

// WatchdogPath is the watchdog state file.
func (s *Store) WatchdogPath() string { return filepath.Join(s.Dir(), WatchdogFile) }

// WatchdogLockPath is held by a running watchdog for its whole life, so
// there is at most one per registry.
func (s *Store) WatchdogLockPath() string { return s.WatchdogPath() + ".lock" }

// SaveWatchdog writes the watchdog state atomically.
func (s *Store) SaveWatchdog(st *WatchdogState) error {
	b, err := MarshalIndented(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
		return err
	}
	perm := fs.FileMode(0o644)
	info, _ := os.Stat(s.WatchdogPath())
	if info != nil {
		perm = info.Mode().Perm()
	}
	return writeFileAtomic(s.WatchdogPath(), b, perm, info)
}

// LoadWatchdog reads the persisted state and decides whether the watchdog
// is running: its process must be alive (same start time) and its last
// cycle recent (within two intervals and a margin).
func (s *Store) LoadWatchdog() (*WatchdogState, error) {
	st := &WatchdogState{IntervalSeconds: DefaultInterval.Seconds()}
	b, err := os.ReadFile(s.WatchdogPath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("watchdog state %s is not valid: %v", s.WatchdogPath(), describeJSONError(err))
	}
	st.Running = st.Running && st.isLive(time.Now())
	return st, nil
}

func (st *WatchdogState) isLive(now time.Time) bool {
	if !probe.Alive(probe.Identity{PID: st.PID, Start: st.PIDStart, Boot: st.BootID}) {
		return false
	}
	interval := time.Duration(st.IntervalSeconds * float64(time.Second))
	last := st.LastCycleAt.Time
	if last.IsZero() {
		last = st.StartedAt.Time
	}
	return now.Sub(last) <= 2*interval+30*time.Second
}

// Status is the document that `gracectl status --json` prints and that
// GET /api/ports/status returns.
type Status struct {
	Registry    string         `json:"registry"`
	Range       Range          `json:"port_range"`
	TotalPorts  int            `json:"total_ports"`
	Allocated   int            `json:"allocated"`
	Available   int            `json:"available"`
	Allocations []*Allocation  `json:"allocations"`
	Watchdog    *WatchdogState `json:"watchdog"`
}

// Status reads the registry and the watchdog state. Allocated counts the
// allocations inside rg; allocations outside it are listed all the same.
func (s *Store) Status(ctx context.Context, rg Range) (*Status, error) {
	r, err := s.Read(ctx)
	if err != nil {
		return nil, err
	}
	wd, err := s.LoadWatchdog()
	if err != nil {
		return nil, err
	}
	return BuildStatus(s.Path(), rg, r, wd), nil
}

// BuildStatus assembles the status document from a registry snapshot.
func BuildStatus(path string, rg Range, r *Registry, wd *WatchdogState) *Status {
	st := &Status{Registry: path, Range: rg, TotalPorts: rg.Size(), Allocations: r.Sorted(), Watchdog: wd}
	for _, a := range st.Allocations {
		if rg.Contains(a.Port) {
			st.Allocated++
		}
	}
	st.Available = st.TotalPorts - st.Allocated
	return st
}

// Version identifies the current contents of the registry and watchdog
// files without reading them: every write replaces a file by rename, so a
// new inode, size or mtime means new contents. Readers that cache (the HTTP
// API) re-read only when it changes.
func (s *Store) Version() string {
	var b strings.Builder
	for _, p := range []string{s.Path(), s.WatchdogPath()} {
		info, err := os.Stat(p)
		if err != nil {
			b.WriteString("-;")
			continue
		}
		fmt.Fprintf(&b, "%v/%d/%d;", inode(info), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}

func inode(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
