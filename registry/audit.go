package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Audit log events, one JSON object per line in
// logs/port_manager/allocations_YYYYMMDD.jsonl (the UTC date of the event).
// The first fields of each are the seed's.

// AllocateEvent is written when a port is handed out.
type AllocateEvent struct {
	Timestamp   Time     `json:"timestamp"`
	Action      string   `json:"action"` // "allocate"
	Port        int      `json:"port"`
	ServiceName string   `json:"service_name"`
	StartedBy   string   `json:"started_by"`
	Purpose     string   `json:"purpose"`
	PID         int      `json:"pid,omitzero"`
	HealthPath  string   `json:"health_path,omitzero"`
	Command     []string `json:"command,omitempty"`
}

// RegisterEvent is written when an owner is bound to an allocation.
type RegisterEvent struct {
	Timestamp   Time   `json:"timestamp"`
	Action      string `json:"action"` // "register"
	Port        int    `json:"port"`
	ServiceName string `json:"service_name"`
	PID         int    `json:"pid"`
	PreviousPID int    `json:"previous_pid,omitzero"`
	Reason      string `json:"reason,omitzero"`
}

// ReleaseEvent is written when a port is given back.
type ReleaseEvent struct {
	Timestamp       Time   `json:"timestamp"`
	Action          string `json:"action"` // "release"
	Port            int    `json:"port"`
	ServiceName     string `json:"service_name"`
	DurationSeconds int64  `json:"duration_seconds"`
	RequestCount    int64  `json:"request_count"`
	ErrorCount      int64  `json:"error_count"`
	PID             int    `json:"pid,omitzero"`
	By              string `json:"by"`
	ByPID           int    `json:"by_pid,omitzero"`
	ByUser          string `json:"by_user,omitzero"`
	Reason          string `json:"reason"`
}

// LogPath is the audit log file for the day of t (UTC).
func LogPath(dir string, t time.Time) string {
	return filepath.Join(dir, "allocations_"+t.UTC().Format("20060102")+".jsonl")
}

// appendLog writes events as whole lines to the day's log with one write
// call on an O_APPEND file, then fsyncs it. It runs under the registry
// lock, so lines from different processes never interleave. If an earlier
// writer died mid-line (power loss), a newline is written first so the new
// lines stay whole.
func appendLog(dir string, t time.Time, events []any) (*pendingLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, ev := range events {
		b, err := MarshalLine(ev)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	f, err := os.OpenFile(LogPath(dir, t), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	torn, err := endsWithoutNewline(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if torn {
		buf = *bytes.NewBuffer(append([]byte{'\n'}, buf.Bytes()...))
	}
	n, err := f.Write(buf.Bytes())
	if err != nil {
		f.Close()
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// A file these lines started is a new name in the folder, which must
	// reach the disk too.
	return &pendingLog{f: f, dir: dir, created: info.Size() == int64(n)}, nil
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
