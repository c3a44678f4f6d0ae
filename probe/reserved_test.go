package probe

import (
	"testing"
)

func TestPortList(t *testing.T) {
	for _, tc := range []struct {
		in, add, rm string
		span        PortSpan
	}{
		{"", "8000-8100", "", PortSpan{8000, 8100}},
		{"\n", "8000-8100", "", PortSpan{8000, 8100}},
		{"8000-8100\n", "8000-8100", "", PortSpan{8000, 8100}},
		{"22,9090", "22,8000-8100,9090", "22,9090", PortSpan{8000, 8100}},
		{"7990-8010,8050,8100-8200", "7990-8200", "7990-7999,8101-8200", PortSpan{8000, 8100}},
		{"7999,8101", "7999-8101", "7999,8101", PortSpan{8000, 8100}},
		{"8000-8100", "8000-8100", "", PortSpan{8000, 8100}},
		{"0,65535", "0,8000,65535", "0,65535", PortSpan{8000, 8000}},
		{"9000, 9001 ,9003", "8000,9000-9001,9003", "9000-9001,9003", PortSpan{8000, 8000}},
	} {
		l, err := ParsePortList(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := l.Add(tc.span).String(); got != tc.add {
			t.Errorf("%q + %v = %q, want %q", tc.in, tc.span, got, tc.add)
		}
		if got := l.Remove(tc.span).String(); got != tc.rm {
			t.Errorf("%q - %v = %q, want %q", tc.in, tc.span, got, tc.rm)
		}
	}
	for _, bad := range []string{"x", "1-", "-1", "5-3", "65536", "1,,2", "1 2", "+5", "0x10", "1-2-3", "99999999999999999999"} {
		if l, err := ParsePortList(bad); err == nil {
			t.Errorf("%q parsed as %q", bad, l)
		}
	}
}

// Whatever parses writes back to a list that parses to itself; adding a
// span covers it and keeps every other port; removing it drops it and
// keeps every other port.
func FuzzParsePortList(f *testing.F) {
	for _, s := range []string{"", "8000-8100", "22,80,443,8000-8100", "0-65535", "1,3,2", "5-5", " 7 , 9-10 ", "10-20,15-30"} {
		f.Add(s, uint16(8000), uint16(8100))
	}
	f.Fuzz(func(t *testing.T, s string, a, b uint16) {
		l, err := ParsePortList(s)
		if err != nil {
			return
		}
		again, err := ParsePortList(l.String())
		if err != nil || again.String() != l.String() {
			t.Fatalf("%q → %q → %q, %v", s, l, again, err)
		}
		for i := 1; i < len(l); i++ {
			if l[i].Lo <= l[i-1].Hi+1 || l[i].Lo > l[i].Hi {
				t.Fatalf("%q: not sorted and merged: %v", s, l)
			}
		}
		span := PortSpan{int(min(a, b)), int(max(a, b))}
		added, removed := l.Add(span), l.Remove(span)
		if added.Covered(span) != span.Hi-span.Lo+1 || removed.Covered(span) != 0 {
			t.Fatalf("%q ± %v: %q, %q", s, span, added, removed)
		}
		for _, p := range []int{0, span.Lo - 1, span.Hi + 1, 65535, int(a) ^ 1} {
			if p < 0 || p > 65535 || (p >= span.Lo && p <= span.Hi) {
				continue
			}
			if added.Contains(p) != l.Contains(p) || removed.Contains(p) != l.Contains(p) {
				t.Fatalf("%q ± %v changed port %d", s, span, p)
			}
		}
		if l.String() != again.String() {
			t.Fatalf("Add or Remove changed the list they were called on")
		}
	})
}
