package cmd

import (
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/gracectl/gracectl/registry"
)

// printJSON is the one way data commands print --json: indented, one
// document, newline-terminated.
func printJSON(w io.Writer, v any) error { return registry.WriteIndented(w, v) }

// escape makes a stored string safe for a terminal: control characters
// (C0, DEL, C1, which include ESC and CSI) are shown as Go escapes, so a
// service name cannot move the cursor or recolour the screen.
func escape(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	q = q[1 : len(q)-1]
	return strings.ReplaceAll(q, `\"`, `"`)
}
