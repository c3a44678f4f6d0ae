package registry

import (
	"testing"
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
