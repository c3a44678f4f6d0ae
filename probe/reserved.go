package probe

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PortSpan is an inclusive run of ports, Lo to Hi.
type PortSpan struct{ Lo, Hi int }

func (s PortSpan) String() string {
	if s.Lo == s.Hi {
		return strconv.Itoa(s.Lo)
	}
	return strconv.Itoa(s.Lo) + "-" + strconv.Itoa(s.Hi)
}

// PortList is a set of ports as sorted, disjoint, non-adjacent spans: the
// kernel's net.ipv4.ip_local_reserved_ports ("8000-8100,9090") after
// ParsePortList.
type PortList []PortSpan

// ParsePortList reads a port list in the kernel's format: entries
// separated by commas, each a port or a range "LO-HI", ports 0 to 65535;
// the empty string is the empty list. Overlapping and adjacent entries are
// merged, as the kernel keeps them (a bitmap).
func ParsePortList(s string) (PortList, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out PortList
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		lo, hi, isRange := strings.Cut(e, "-")
		a, err1 := parsePortNumber(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = parsePortNumber(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("malformed port list entry %q", e)
		}
		out = out.Add(PortSpan{a, b})
	}
	return out, nil
}

func parsePortNumber(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a port: %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("not a port: %q", s)
	}
	return n, nil
}

// String is the list in the kernel's format.
func (l PortList) String() string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// Add returns the list with span's ports added; l is not changed.
func (l PortList) Add(span PortSpan) PortList {
	out := make(PortList, 0, len(l)+1)
	out = append(out, l...)
	out = append(out, span)
	slices.SortFunc(out, func(a, b PortSpan) int { return a.Lo - b.Lo })
	merged := out[:1]
	for _, s := range out[1:] {
		last := &merged[len(merged)-1]
		if s.Lo <= last.Hi+1 {
			last.Hi = max(last.Hi, s.Hi)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// Remove returns the list without span's ports, every other port kept (a
// span that reaches across span's edges is cut there); l is not changed.
func (l PortList) Remove(span PortSpan) PortList {
	var out PortList
	for _, s := range l {
		if s.Hi < span.Lo || s.Lo > span.Hi {
			out = append(out, s)
			continue
		}
		if s.Lo < span.Lo {
			out = append(out, PortSpan{s.Lo, span.Lo - 1})
		}
		if s.Hi > span.Hi {
			out = append(out, PortSpan{span.Hi + 1, s.Hi})
		}
	}
	return out
}

// Covered counts the ports of span the list holds.
func (l PortList) Covered(span PortSpan) int {
	n := 0
	for _, s := range l {
		lo, hi := max(s.Lo, span.Lo), min(s.Hi, span.Hi)
		if lo <= hi {
			n += hi - lo + 1
		}
	}
	return n
}

// Contains reports whether port is in the list.
func (l PortList) Contains(port int) bool { return l.Covered(PortSpan{port, port}) == 1 }
