package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeDays writes day files under dir: each day's lines as given.
func writeDays(t *testing.T, dir string, days map[string][]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for day, lines := range days {
		content := strings.Join(lines, "\n")
		if len(lines) > 0 {
			content += "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "allocations_"+day+".jsonl"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func line(seq uint64, extra string) string {
	return fmt.Sprintf(`{"timestamp":"2025-11-15T14:30:00Z","action":"allocate","port":%d,"service_name":"s%s","seq":%d}`, 20000+seq, extra, seq)
}

func seqs(lines []LogLine) []uint64 {
	var out []uint64
	for _, l := range lines {
		out = append(out, l.Seq)
	}
	return out
}

// The log read back across day files: forward from a sequence number,
// backward from the end, and where it ends, past torn and foreign lines
// and lines longer than a read block.
func TestLogReadBack(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 150<<10) // longer than a 64 KiB block
	writeDays(t, dir, map[string][]string{
		"20251113": {line(1, ""), line(2, long), "not json", line(3, "")},
		"20251114": {},
		"20251115": {`{"timestamp":"2025-11-15T00:00:00Z","action":"allocate","port":1}`, line(4, ""), line(5, long), line(6, "")},
	})
	// A torn last line, still being written, is not read.
	f, err := os.OpenFile(filepath.Join(dir, "allocations_20251115.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"timestamp":"2025-11-15T14:30:00Z","act`)
	f.Close()

	var got []LogLine
	collect := func(l LogLine) bool { got = append(got, l); return true }
	for _, tc := range []struct {
		after, upto uint64
		want        []uint64
	}{
		{0, 6, []uint64{1, 2, 3, 4, 5, 6}},
		{2, 6, []uint64{3, 4, 5, 6}},
		{3, 5, []uint64{4, 5}},
		{5, 99, []uint64{6}},
		{6, 6, nil},
	} {
		got = nil
		if err := LogAfter(dir, tc.after, tc.upto, collect); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Errorf("LogAfter(%d, %d) = %v, want %v", tc.after, tc.upto, seqs(got), tc.want)
		}
	}
	got = nil
	if err := LogBackward(dir, collect); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{6, 5, 4, 0, 3, 2, 1}; !slices.Equal(seqs(got), want) {
		t.Errorf("LogBackward: %v, want %v", seqs(got), want)
	}
	if !strings.Contains(string(got[1].Raw), long) || got[1].Port != 20005 || got[1].Timestamp.IsZero() {
		t.Errorf("the long line: %d bytes, port %d", len(got[1].Raw), got[1].Port)
	}
	path, off, seq, err := LogEnd(dir, time.Date(2025, 11, 15, 23, 0, 0, 0, time.UTC))
	info, _ := os.Stat(path)
	if err != nil || seq != 6 || off != info.Size()-int64(len(`{"timestamp":"2025-11-15T14:30:00Z","act`)) {
		t.Fatalf("LogEnd: %s %d %d %v (size %d)", path, off, seq, err, info.Size())
	}
	// A new day without lines yet: the last seq is the day before's.
	if _, off, seq, err := LogEnd(dir, time.Date(2025, 11, 16, 1, 0, 0, 0, time.UTC)); err != nil || off != 0 || seq != 6 {
		t.Fatalf("LogEnd of a new day: %d %d %v", off, seq, err)
	}
	// Following from the end reads the torn line once it is whole.
	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`ion":"release","port":20001,"seq":7}` + "\n")
	f.Close()
	got = nil
	if next, err := ScanLog(path, off, collect); err != nil || !slices.Equal(seqs(got), []uint64{7}) || next <= off {
		t.Fatalf("ScanLog from the end: %v %d %v", seqs(got), next, err)
	}
}

// A log the client's id is older than: replayed from the oldest day kept.
func TestLogAfterOlderThanTheLog(t *testing.T) {
	dir := t.TempDir()
	writeDays(t, dir, map[string][]string{"20251115": {line(40, ""), line(41, "")}})
	var got []LogLine
	if err := LogAfter(dir, 3, 41, func(l LogLine) bool { got = append(got, l); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs(got), []uint64{40, 41}) {
		t.Fatalf("got %v", seqs(got))
	}
	if seq, err := LastLogSeq(t.TempDir()); err != nil || seq != 0 {
		t.Fatalf("an empty log: %d %v", seq, err)
	}
}

// Whatever a day file holds, reading it backward gives the lines reading
// it forward gives, in reverse, and never panics.
func FuzzScanBackward(f *testing.F) {
	f.Add([]byte(line(1, "") + "\n" + line(2, "") + "\n"))
	f.Add([]byte("\n\n{}\n{\"seq\":3}"))
	f.Add([]byte(`{"seq":1}` + "\n" + strings.Repeat("y", 70<<10) + "\n" + `{"seq":2}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "allocations_20251115.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var fwd, back []string
		end, err := ScanLog(path, 0, func(l LogLine) bool { fwd = append(fwd, string(l.Raw)); return true })
		if err != nil {
			t.Fatal(err)
		}
		whole, err := scanBackward(path, -1, func(l LogLine) bool { back = append(back, string(l.Raw)); return true })
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(back)
		if !slices.Equal(fwd, back) || end != whole {
			t.Fatalf("forward %q (to %d), backward %q (to %d)", fwd, end, back, whole)
		}
	})
}
