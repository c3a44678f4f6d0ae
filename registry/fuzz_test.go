package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
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
	// The canonical form, as the encoder writes it, with every field.
	full := &Registry{Allocations: map[string]*Allocation{}}
	full.Put(&Allocation{Port: 8000, ServiceName: "svc", StartedBy: "serve.py", Purpose: "p", PID: 12,
		AllocatedAt: Time{time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)}, LastHealthCheck: Now(), HealthStatus: "active",
		RequestCount: 3, ErrorCount: -1, ID: "abc", PIDStart: 99, BootID: "b", RegisteredAt: Now(), HealthPath: "/health",
		Command: []string{"python3", "serve.py"}, HealthFailures: 2, ListenerPID: 13, ListenerName: "python3", LastError: "e"})
	full.Put(&Allocation{Port: 8001, ServiceName: "r", HealthStatus: StatusReserved})
	canon, err := encodeIndented(full)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(canon)
	f.Fuzz(func(t *testing.T, data []byte) {
		slow := new(Registry)
		slowErr := slow.UnmarshalJSON(bytes.TrimSpace(data))
		fast, ok := decodeFast(string(bytes.TrimSpace(data)), true)
		if ok {
			if slowErr != nil {
				t.Fatalf("fast decoder accepted what encoding/json refuses (%v): %q", slowErr, data)
			}
			a, _ := slow.MarshalJSON()
			b, _ := fast.MarshalJSON()
			if !bytes.Equal(a, b) {
				t.Fatalf("decoders disagree on %q:\n%s\n%s", data, a, b)
			}
			// Text kept as canonical is exactly what the encoder writes.
			for key, a := range fast.Allocations {
				if a.src == nil {
					continue
				}
				enc, err := appendAllocation(nil, a, "    ")
				if err != nil || string(enc) != a.src.raw {
					t.Fatalf("allocation %q kept as canonical but encodes differently (%v):\n%s\n%s", key, err, a.src.raw, enc)
				}
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

// TestCanonicalTextIsExact: text that differs from what the encoder would
// write, however slightly, is never kept as an allocation's canonical text.
func TestCanonicalTextIsExact(t *testing.T) {
	r := &Registry{Allocations: map[string]*Allocation{}}
	r.Put(&Allocation{Port: 8000, ServiceName: "svc", StartedBy: "serve.py", Purpose: "p", PID: 12,
		AllocatedAt: Time{time.Date(2026, 1, 31, 1, 2, 3, 0, time.UTC)}, HealthStatus: "active", RequestCount: 3,
		Command: []string{"python3", "serve.py"}})
	canon, err := encodeIndented(r)
	if err != nil {
		t.Fatal(err)
	}
	c := string(canon)
	mutations := map[string]string{
		"as written":      c,
		"less than":       strings.Replace(c, `"p"`, `"p<"`, 1),
		"greater than":    strings.Replace(c, `"p"`, `"p>"`, 1),
		"ampersand":       strings.Replace(c, `"p"`, `"p&"`, 1),
		"line separator":  strings.Replace(c, `"p"`, "\"p\u2028\"", 1),
		"minus zero":      strings.Replace(c, `"request_count": 3`, `"request_count": -0`, 1),
		"zero pid":        strings.Replace(c, `"pid": 12`, `"pid": 0`, 1),
		"empty time":      strings.Replace(c, `"2026-01-31T01:02:03Z"`, `""`, 1),
		"offset time":     strings.Replace(c, `"2026-01-31T01:02:03Z"`, `"2026-01-31T01:02:03+00:00"`, 1),
		"null optional":   strings.Replace(c, `"pid": 12,`, `"pid": 12, "last_health_check": null,`, 1),
		"empty command":   strings.Replace(c, "[\n        \"python3\",\n        \"serve.py\"\n      ]", "[]", 1),
		"extra space":     strings.Replace(c, `"port": 8000`, `"port":  8000`, 1),
		"tab indent":      strings.Replace(c, "\n      \"purpose\"", "\n\t\"purpose\"", 1),
		"swapped fields":  strings.Replace(strings.Replace(c, `"started_by": "serve.py"`, `"purpose": "X"`, 1), `"purpose": "p"`, `"started_by": "serve.py"`, 1),
		"missing always":  strings.Replace(c, "\n      \"purpose\": \"p\",", "", 1),
		"compact":         `{"allocations": {"8000": {"port": 8000, "service_name": "svc", "started_by": "", "purpose": "", "allocated_at": null, "health_status": "", "request_count": 0, "error_count": 0}}}`,
		"unicode escaped": strings.Replace(c, `"svc"`, `"sv\u0063"`, 1),
	}
	for name, text := range mutations {
		got, ok := decodeFast(text, true)
		if !ok {
			continue
		}
		a := got.Get(8000)
		if a == nil || a.src == nil {
			if name == "as written" {
				t.Errorf("the encoder's own output was not kept as canonical")
			}
			continue
		}
		enc, _ := appendAllocation(nil, a, "    ")
		if string(enc) != a.src.raw {
			t.Errorf("%s: kept as canonical but encodes differently:\n%s\n%s", name, a.src.raw, enc)
		}
	}
}
