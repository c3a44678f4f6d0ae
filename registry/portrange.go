package registry

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultRange is the seed's managed range.
var DefaultRange = Range{Start: 8000, End: 8100}

// Range is an inclusive range of TCP ports.
type Range struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End) }

// Size is how many ports the range holds.
func (r Range) Size() int { return r.End - r.Start + 1 }

// Contains reports whether port lies in the range.
func (r Range) Contains(port int) bool { return port >= r.Start && port <= r.End }

// Overlaps reports whether the two ranges share a port.
func (r Range) Overlaps(o Range) bool { return r.Start <= o.End && o.Start <= r.End }

// ParsePort parses a TCP port number, 1 to 65535.
func ParsePort(s string) (int, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("port is empty")
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is outside 1-65535", n)
	}
	return n, nil
}

// RangeError is a port range that cannot be read: Spec as it was given,
// Problem what is wrong with it.
type RangeError struct{ Spec, Problem string }

func (e *RangeError) Error() string { return fmt.Sprintf("port range %q: %s", e.Spec, e.Problem) }

// ParseRange parses "START-END" (inclusive). A single port "N" is the range N-N.
func ParseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, &RangeError{Spec: s, Problem: "empty (want START-END, e.g. 8000-8100)"}
	}
	lo, hi, found := strings.Cut(t, "-")
	if !found {
		hi = lo
	}
	start, err := ParsePort(lo)
	if err != nil {
		return Range{}, &RangeError{Spec: s, Problem: err.Error()}
	}
	end, err := ParsePort(hi)
	if err != nil {
		return Range{}, &RangeError{Spec: s, Problem: err.Error()}
	}
	if end < start {
		return Range{}, &RangeError{Spec: s, Problem: fmt.Sprintf("reversed (start %d is above end %d)", start, end)}
	}
	return Range{Start: start, End: end}, nil
}
