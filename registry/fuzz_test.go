package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(seedRegistry))
	f.Add([]byte(`{"allocations": {}}`))
	f.Add([]byte(`{"allocations": {"8000": {"port": 8000, "service_name": "a", "command": ["x"]}}, "z": 1}`))
	f.Add([]byte(`{"allocations": {"8000": {"port": "8000"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must write back to something that parses to the
		// same bytes again.
		out, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal of a parsed registry: %v", err)
		}
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		out2, _ := r2.MarshalJSON()
		if string(out) != string(out2) {
			t.Fatalf("unstable:\n%s\n%s", out, out2)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"8000-8100", "1", "65535-65535", "a-b", "-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if r.Start < 1 || r.End > 65535 || r.Start > r.End || r.Size() < 1 {
			t.Fatalf("ParseRange(%q) = %+v", s, r)
		}
		back, err := ParseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip of %q: %+v %v", s, back, err)
		}
	})
}

// FuzzUpdateLeavesBadFileUntouched writes arbitrary bytes as the registry
// and tries a change: either it parses and the change succeeds, or the file
// is left byte for byte as it was.
func FuzzUpdateLeavesBadFileUntouched(f *testing.F) {
	f.Add([]byte(seedRegistry))
	f.Add([]byte(`{"allocations": {"8000": {"port": "8000"}}}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Open(t.TempDir(), time.Second)
		if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.Path(), data, 0o644); err != nil {
			t.Fatal(err)
		}
		err := s.Update(context.Background(), func(r *Registry, tx *Tx) error {
			r.Put(&Allocation{Port: 21999, ServiceName: "fuzz", AllocatedAt: tx.Now()})
			return nil
		})
		after, _ := os.ReadFile(s.Path())
		if err != nil {
			if string(after) != string(data) {
				t.Fatalf("failed update changed the file: %v", err)
			}
			return
		}
		r, perr := Parse(after)
		if perr != nil || r.Get(21999) == nil {
			t.Fatalf("successful update wrote an unreadable registry: %v", perr)
		}
	})
}

// FuzzFastDecoderAgrees: whenever the hand-written decoder accepts an input,
// encoding/json accepts it too and decodes the same registry; and the
// hand-written encoder writes what encoding/json and json.Indent write.
func FuzzFastDecoderAgrees(f *testing.F) {
	f.Add([]byte(seedRegistry))
	f.Add([]byte(`{"allocations": {"8000": {"port": 8000, "service_name": "a", "command": ["x", "y"], "pid_start": 5}}, "last_updated": "2025-11-15T14:35:00Z"}`))
	f.Add([]byte(`{"allocations":{"1":{"port":1,"service_name":"<&>\u2028"}},"allocations":{"2":{"port":2,"service_name":"b"}}}`))
	f.Add([]byte(`{"allocations": {"8000": {"port": 8000, "service_name": "a", "allocated_at": null, "command": []}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		slow := new(Registry)
		slowErr := slow.UnmarshalJSON(bytes.TrimSpace(data))
		fast, ok := decodeFast(string(bytes.TrimSpace(data)))
		if ok {
			if slowErr != nil {
				t.Fatalf("fast decoder accepted what encoding/json refuses (%v): %q", slowErr, data)
			}
			a, _ := slow.MarshalJSON()
			b, _ := fast.MarshalJSON()
			if !bytes.Equal(a, b) {
				t.Fatalf("decoders disagree on %q:\n%s\n%s", data, a, b)
			}
		}
		if slowErr != nil {
			return
		}
		want, err := slow.MarshalJSON()
		if err != nil {
			return
		}
		want, err = indent(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeIndented(slow)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) {
			t.Fatalf("encoders disagree on %q:\n%s\n%s", data, want, got)
		}
	})
}

// indent is what encodeIndented must match: encoding/json's indentation.
func indent(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
