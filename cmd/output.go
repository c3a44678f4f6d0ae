package cmd

import (
	"io"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/width"

	"github.com/gracectl/gracectl/registry"
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

// writeTable draws rows under header as an ASCII table, every cell on one
// line, left-aligned, each column as wide as its widest cell on a terminal:
//
//	+------+---------+
//	| Port | Service |
//	+------+---------+
//	| 8000 | web     |
//	+------+---------+
//
// Cells are measured once (rows of thousands of ports are common); each
// line goes to w in one write.
func writeTable(w io.Writer, header []string, rows [][]string) {
	cols := len(header)
	widths := make([]int, cols)
	cellWidth := make([][]int, len(rows)+1)
	for i, row := range append([][]string{header}, rows...) {
		cw := make([]int, cols)
		for j := 0; j < cols && j < len(row); j++ {
			cw[j] = textWidth(row[j])
			widths[j] = max(widths[j], cw[j])
		}
		cellWidth[i] = cw
	}
	var line []byte
	rule := []byte{'+'}
	for _, n := range widths {
		rule = append(rule, strings.Repeat("-", n+2)...)
		rule = append(rule, '+')
	}
	rule = append(rule, '\n')
	put := func(row []string, cw []int) {
		line = append(line[:0], '|')
		for j, n := range widths {
			cell := ""
			if j < len(row) {
				cell = row[j]
			}
			line = append(line, ' ')
			line = append(line, cell...)
			for k := cw[j]; k < n+1; k++ {
				line = append(line, ' ')
			}
			line = append(line, '|')
		}
		line = append(line, '\n')
		_, _ = w.Write(line)
	}
	_, _ = w.Write(rule)
	put(header, cellWidth[0])
	_, _ = w.Write(rule)
	for i, row := range rows {
		put(row, cellWidth[i+1])
	}
	_, _ = w.Write(rule)
}

// textWidth is the number of terminal columns s takes: its length if it is
// printable ASCII; else each character counts 2 if Unicode calls it wide
// or full-width (CJK, most emoji), 0 if it is a combining mark or a
// format character, 1 otherwise (x/text's East Asian Width table, whose
// package sets nothing up at start-up, unlike go-runewidth's regexp).
func textWidth(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return runesWidth(s)
		}
	}
	return len(s)
}

func runesWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		case r == '\u200b':
		default:
			switch width.LookupRune(r).Kind() {
			case width.EastAsianWide, width.EastAsianFullwidth:
				n += 2
			default:
				n++
			}
		}
	}
	return n
}
