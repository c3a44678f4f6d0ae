package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Audit log events, one JSON object per line in
// logs/port_manager/allocations_YYYYMMDD.jsonl (the UTC date of the event).
// The first fields of each are the seed's.

// Event is an audit log event. Every event carries a sequence number, one
// more than the line before it in the registry's history, so a missing or
// repeated line shows.
type Event interface{ setSeq(uint64) }

// AllocateEvent is written when a port is handed out.
type AllocateEvent struct {
	Timestamp   Time     `json:"timestamp"`
	Action      string   `json:"action"` // "allocate"
	Port        int      `json:"port"`
	ServiceName string   `json:"service_name"`
	PortName    string   `json:"port_name,omitzero"`
	StartedBy   string   `json:"started_by"`
	Purpose     string   `json:"purpose"`
	PID         int      `json:"pid,omitzero"`
	HealthPath  string   `json:"health_path,omitzero"`
	Command     []string `json:"command,omitempty"`
	Seq         uint64   `json:"seq"`
}

func (e *AllocateEvent) setSeq(n uint64) { e.Seq = n }

// AdoptEvent is written when a process already listening without an
// allocation (a squatter) is made the owner of a new allocation.
type AdoptEvent struct {
	Timestamp   Time       `json:"timestamp"`
	Action      string     `json:"action"` // "adopt"
	Port        int        `json:"port"`
	ServiceName string     `json:"service_name"`
	StartedBy   string     `json:"started_by"`
	PID         int        `json:"pid"`
	Command     []string   `json:"command,omitempty"`
	Container   *Container `json:"container,omitzero"`
	Seq         uint64     `json:"seq"`
}

func (e *AdoptEvent) setSeq(n uint64) { e.Seq = n }

// RegisterEvent is written when an owner is bound to an allocation.
type RegisterEvent struct {
	Timestamp   Time   `json:"timestamp"`
	Action      string `json:"action"` // "register"
	Port        int    `json:"port"`
	ServiceName string `json:"service_name"`
	PID         int    `json:"pid"`
	PreviousPID int    `json:"previous_pid,omitzero"`
	Reason      string `json:"reason,omitzero"`
	Forced      bool   `json:"forced,omitzero"` // a live owner was replaced with --force
	// Container is the container the new owner is the main process of.
	Container *Container `json:"container,omitzero"`
	Seq       uint64     `json:"seq"`
}

func (e *RegisterEvent) setSeq(n uint64) { e.Seq = n }

// ReleaseEvent is written when a port is given back.
type ReleaseEvent struct {
	Timestamp       Time   `json:"timestamp"`
	Action          string `json:"action"` // "release"
	Port            int    `json:"port"`
	ServiceName     string `json:"service_name"`
	PortName        string `json:"port_name,omitzero"`
	DurationSeconds int64  `json:"duration_seconds"`
	RequestCount    int64  `json:"request_count"`
	ErrorCount      int64  `json:"error_count"`
	PID             int    `json:"pid,omitzero"`
	By              string `json:"by"`
	ByPID           int    `json:"by_pid,omitzero"`
	ByUser          string `json:"by_user,omitzero"`
	Reason          string `json:"reason"`
	Seq             uint64 `json:"seq"`
}

func (e *ReleaseEvent) setSeq(n uint64) { e.Seq = n }

// LogPath is the audit log file for the day of t (UTC).
func LogPath(dir string, t time.Time) string {
	return filepath.Join(dir, "allocations_"+t.UTC().Format("20060102")+".jsonl")
}

// appendLog writes lines whole to the day's log under root with one write call on an
// O_APPEND file (never through a link; a new file gets perm). It runs under
// the registry lock, so lines from different processes never interleave.
// If an earlier writer died mid-line (power loss), a newline is written
// first so the new lines stay whole. The caller syncs the result.
func appendLog(root string, t time.Time, lines []string, perm fs.FileMode) (*pendingLog, error) {
	if err := ensureDir(root, LogDir, 0o755); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, LogDir)
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	f, err := openNoFollow(LogPath(dir, t), os.O_RDWR|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	created := info.Size() == 0
	if created && info.Mode().Perm() != perm && ownedBySelf(info) {
		_ = f.Chmod(perm) // the umask narrowed a shared registry's mode
	}
	torn, err := endsWithoutNewline(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if torn {
		buf = *bytes.NewBuffer(append([]byte{'\n'}, buf.Bytes()...))
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return nil, err
	}
	// A file these lines started is a new name in the folder, which must
	// reach the disk too.
	return &pendingLog{f: f, dir: dir, created: created}, nil
}

// flushPending appends the audit lines of the last change that the log
// lacks. A writer appends its lines after renaming the registry into place;
// killed in between, it leaves a registry whose change has no line. Its
// lines are in that registry (pending_audit), so the next writer, under the
// lock, appends those not already at the end of their day's log. Lines are
// only ever appended at the end, by the lock holder, so looking at the last
// few kilobytes is enough.
func flushPending(root string, lines []string, perm fs.FileMode) ([]*pendingLog, error) {
	dir := filepath.Join(root, LogDir)
	type day struct {
		at    time.Time // a time in the day, for appendLog
		lines []string
	}
	byPath := map[string]*day{}
	var paths []string
	for _, l := range lines {
		var head struct {
			Timestamp Time `json:"timestamp"`
		}
		if err := Unmarshal([]byte(l), &head); err != nil || head.Timestamp.IsZero() {
			return nil, fmt.Errorf("pending audit line %s has no timestamp", Quote(l))
		}
		path := LogPath(dir, head.Timestamp.Time)
		if byPath[path] == nil {
			byPath[path] = &day{at: head.Timestamp.Time}
			paths = append(paths, path)
		}
		byPath[path].lines = append(byPath[path].lines, l)
	}
	var out []*pendingLog
	for _, path := range paths {
		d := byPath[path]
		missing, err := missingLines(path, d.lines)
		if err != nil {
			return out, err
		}
		if len(missing) == 0 {
			continue
		}
		l, err := appendLog(root, d.at, missing, perm)
		if err != nil {
			return out, err
		}
		out = append(out, l)
	}
	return out, nil
}

// missingLines returns the lines not found whole in the tail of the log
// file at path.
func missingLines(path string, lines []string) ([]string, error) {
	n := int64(4096)
	for _, l := range lines {
		n += int64(len(l)) + 1
	}
	tail, _, err := ReadFileFrom(path, -n)
	if errors.Is(err, fs.ErrNotExist) {
		return lines, nil
	}
	if err != nil {
		return nil, err
	}
	text := "\n" + string(tail)
	var missing []string
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			missing = append(missing, l)
		}
	}
	return missing, nil
}

// pendingLog is an audit log file whose new lines are written but not yet
// synced.
type pendingLog struct {
	f       *os.File
	dir     string
	created bool
}

// sync makes the appended lines durable and closes the file. A nil
// pendingLog has nothing to sync.
func (l *pendingLog) sync() error {
	if l == nil {
		return nil
	}
	if err := l.f.Sync(); err != nil {
		l.f.Close()
		return err
	}
	if err := l.f.Close(); err != nil {
		return err
	}
	if l.created {
		return syncDir(l.dir)
	}
	return nil
}

func endsWithoutNewline(f *os.File) (bool, error) {
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return false, err
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], info.Size()-1); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading log tail: %w", err)
	}
	return last[0] != '\n', nil
}

func ownPID() int { return os.Getpid() }

// OpenLogFile opens name in the log folder for appending (creating both if
// needed, never through a link): the background watchdog's own log.
func (s *Store) OpenLogFile(name string) (*os.File, error) {
	if err := ensureDir(s.Root, LogDir, 0o755); err != nil {
		return nil, err
	}
	return openNoFollow(filepath.Join(s.LogDir(), name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, s.FileMode())
}
