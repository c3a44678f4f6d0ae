package registry

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Reading the audit log back: the event stream replays it to clients that
// reconnect (by seq), the dashboard's backlog shows its last lines, and the
// watchdog's pool history is seeded from it. Lines are read as they are;
// a line that is not a JSON object (a torn last line, something written by
// hand) is skipped, never an error.

// LogLine is one audit log line: the raw bytes (without the newline) and
// the fields every event has.
type LogLine struct {
	Raw       []byte
	Timestamp Time   `json:"timestamp"`
	Action    string `json:"action"`
	Port      int    `json:"port"`
	Seq       uint64 `json:"seq"`
}

// parseLogLine reads the common fields of a line; false if it is not a
// JSON object.
func parseLogLine(raw []byte) (LogLine, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return LogLine{}, false
	}
	var l LogLine
	if err := Unmarshal(raw, &l); err != nil {
		return LogLine{}, false
	}
	l.Raw = raw
	return l, true
}

// LogDays lists the audit log's day files in dir, oldest first.
func LogDays(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "allocations_[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9].jsonl"))
	slices.Sort(files) // YYYYMMDD sorts by date
	return files, err
}

// openLog opens a day file for reading: never through a link, and only a
// regular file.
func openLog(path string) (*os.File, error) {
	f, err := openNoFollow(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", path)
		}
		return nil, err
	}
	return f, nil
}

// ScanLog calls fn with each whole line of the day file at path from byte
// off on, in order, until fn returns false. It returns the offset just past
// the last whole line it read, where the next scan starts: a line still
// being written (no newline yet) is left for then. A missing file has no
// lines.
func ScanLog(path string, off int64, fn func(LogLine) bool) (int64, error) {
	f, err := openLog(path)
	if errors.Is(err, fs.ErrNotExist) {
		return off, nil
	}
	if err != nil {
		return off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it whole (the
			// buffer's bytes first, before the next read reuses it).
			head := slices.Clone(line)
			rest, err2 := r.ReadBytes('\n')
			line, err = append(head, rest...), err2
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return off, nil
			}
			return off, err
		}
		off += int64(len(line))
		if l, ok := parseLogLine(line); ok && !fn(l) {
			return off, nil
		}
	}
}

// scanBackward calls fn with the whole lines of the day file at path that
// end before byte end (the file's size if end < 0), from the last to the
// first, until fn returns false. It reads from the end in blocks, so a
// look at the last lines of a large day costs little. It returns where the
// last whole line ends (0 when there is none): bytes after it are a line
// still being written.
func scanBackward(path string, end int64, fn func(LogLine) bool) (int64, error) {
	f, err := openLog(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if end < 0 {
		info, err := f.Stat()
		if err != nil {
			return 0, err
		}
		end = info.Size()
	}
	whole := int64(-1)
	var carry []byte // the start of a line whose end was in the block read before
	const block = 64 << 10
	for end > 0 {
		start := max(end-block, 0)
		buf := make([]byte, end-start, end-start+int64(len(carry)))
		if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		buf = append(buf, carry...)
		if whole < 0 {
			// The bytes after the last newline are no whole line yet.
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 {
				carry, end = slices.Clone(buf), start
				continue
			}
			whole, buf = start+int64(i)+1, buf[:i+1]
		}
		// Every line after the first newline of buf is whole; the part
		// before it may continue in the block before.
		for {
			i := bytes.LastIndexByte(buf[:len(buf)-1], '\n')
			if i < 0 {
				break
			}
			if l, ok := parseLogLine(buf[i+1:]); ok && !fn(l) {
				return whole, nil
			}
			buf = buf[:i+1]
		}
		carry, end = slices.Clone(buf), start
	}
	if whole < 0 {
		return 0, nil
	}
	if l, ok := parseLogLine(carry); ok {
		fn(l)
	}
	return whole, nil
}

// LogBackward calls fn with the lines of the audit log in dir from the
// newest to the oldest, across day files, until fn returns false.
func LogBackward(dir string, fn func(LogLine) bool) error {
	days, err := LogDays(dir)
	if err != nil {
		return err
	}
	more := true
	for i := len(days) - 1; i >= 0 && more; i-- {
		_, err := scanBackward(days[i], -1, func(l LogLine) bool {
			more = fn(l)
			return more
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// LastLogSeq is the sequence number of the audit log's last numbered line
// in dir (0 for an empty log).
func LastLogSeq(dir string) (uint64, error) {
	days, err := LogDays(dir)
	if err != nil {
		return 0, err
	}
	return lastSeqOf(days)
}

// lastSeqOf is the sequence number of the last numbered line in days,
// looking from the newest.
func lastSeqOf(days []string) (uint64, error) {
	for i := len(days) - 1; i >= 0; i-- {
		if _, seq, err := lastSeq(days[i]); err != nil || seq > 0 {
			return seq, err
		}
	}
	return 0, nil
}

// lastSeq is the sequence number of a day file's last numbered line, and
// where its last whole line ends.
func lastSeq(path string) (whole int64, seq uint64, err error) {
	whole, err = scanBackward(path, -1, func(l LogLine) bool {
		seq = l.Seq
		return seq == 0
	})
	return whole, seq, err
}

// LogAfter calls fn, in order, with the audit log's lines whose sequence
// numbers are above after and at most upto, until fn returns false. It
// starts at the day file that holds after+1 (or the oldest there is, when
// the log no longer reaches back that far) and stops past upto, so a
// client that missed a few events costs a read of the last day or two.
func LogAfter(dir string, after, upto uint64, fn func(LogLine) bool) error {
	if upto <= after {
		return nil
	}
	days, err := LogDays(dir)
	if err != nil {
		return err
	}
	first := 0
	for i := len(days) - 1; i >= 0; i-- {
		if s := firstSeq(days[i]); s > 0 && s <= after+1 {
			first = i
			break
		}
	}
	for _, path := range days[first:] {
		more := true
		_, err := ScanLog(path, 0, func(l LogLine) bool {
			switch {
			case l.Seq > upto:
				more = false
			case l.Seq > after:
				more = fn(l)
			}
			return more
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// firstSeq is the sequence number of the first numbered line of a day
// file (0 if none).
func firstSeq(path string) uint64 {
	var seq uint64
	_, _ = ScanLog(path, 0, func(l LogLine) bool {
		seq = l.Seq
		return seq == 0
	})
	return seq
}

// LogEnd is where today's log (by t) ends now, with the highest sequence
// number written up to there: the point from which a follower of the log
// reads new lines. A line still being written is left to the follower.
func LogEnd(dir string, t time.Time) (path string, off int64, seq uint64, err error) {
	path = LogPath(dir, t)
	if off, seq, err = lastSeq(path); err != nil || seq > 0 {
		return path, off, seq, err
	}
	// Nothing numbered today yet: the days before.
	days, err := LogDays(dir)
	if err != nil {
		return path, off, 0, err
	}
	before := slices.DeleteFunc(days, func(d string) bool { return d >= path })
	seq, err = lastSeqOf(before)
	return path, off, seq, err
}
