package cmd

import (
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/gracectl/gracectl/registry"
	"github.com/olekukonko/tablewriter"
)

// printJSON is the one way data commands print --json: indented, one
// document, newline-terminated.
func printJSON(w io.Writer, v any) error { return registry.WriteIndented(w, v) }

// escape makes a stored string safe for a terminal: control characters
// (C0, DEL, C1, which include ESC and CSI) and Unicode's bidirectional
// controls (U+202A-U+202E, U+2066-U+2069, …) are shown as Go escapes, so a
// service name can neither move the cursor, recolour the screen, nor show
// its text reordered to pass for another.
func escape(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Bidi_Control, r) {
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

// writeTable draws rows under header as an ASCII table with tablewriter
// (the design card's table library), every cell on one line, left-aligned,
// each column as wide as its widest cell on a terminal:
//
//	+------+---------+
//	| Port | Service |
//	+------+---------+
//	| 8000 | web     |
//	+------+---------+
func writeTable(w io.Writer, header []string, rows [][]string) {
	t := tablewriter.NewWriter(w)
	t.SetHeader(header)
	t.SetAutoFormatHeaders(false) // titles as written, not upper-cased
	t.SetHeaderAlignment(tablewriter.ALIGN_LEFT)
	t.SetAlignment(tablewriter.ALIGN_LEFT)
	t.SetAutoWrapText(false) // one line per row, however long a cell
	t.AppendBulk(rows)
	t.Render()
}
