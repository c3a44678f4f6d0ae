package registry

import (
	"context"
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
		out, err := MarshalIndented(r)
		if err != nil {
			t.Fatalf("marshal of a parsed registry: %v", err)
		}
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		out2, _ := MarshalIndented(r2)
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

// FuzzDNSLabel: whatever a service is called, its label is a valid DNS
// label or none, and a label maps to itself.
func FuzzDNSLabel(f *testing.F) {
	for _, s := range []string{"grace_backend", "Café API", "ünï☃", "-a-", "..", "", "a__b", strings.Repeat("x", 64), "9lives", "xn--bcher-kva", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := DNSLabel(s)
		if !ok {
			if l != "" {
				t.Fatalf("DNSLabel(%q) = %q, not ok", s, l)
			}
			return
		}
		if !ValidDomain(l) || strings.Contains(l, ".") || len(l) > MaxDNSLabel {
			t.Fatalf("DNSLabel(%q) = %q, not a DNS label", s, l)
		}
		if again, ok := DNSLabel(l); !ok || again != l {
			t.Fatalf("DNSLabel(%q) = %q, but DNSLabel(%q) = %q", s, l, l, again)
		}
	})
}

func TestDNSLabel(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"grace_backend", "grace-backend", true},
		{"Café API", "cafe-api", true},
		{"web", "web", true},
		{"__a..b__", "a-b", true},
		{"9lives", "9lives", true},
		{"ünï☃", "uni", true},
		{"☃", "", false},
		{"", "", false},
		{strings.Repeat("x", 63), strings.Repeat("x", 63), true},
		{strings.Repeat("x", 64), "", false},
	} {
		got, ok := DNSLabel(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("DNSLabel(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for d, ok := range map[string]bool{"localhost": true, "dev.example.com": true, "Localhost": false, "a..b": false, "-a": false, "": false, "a_b": false} {
		if ValidDomain(d) != ok {
			t.Errorf("ValidDomain(%q) = %v", d, !ok)
		}
	}
}
