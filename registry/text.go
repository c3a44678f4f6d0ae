package registry

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on stored strings. They keep the registry and each log line small
// and every report readable.
const (
	MaxServiceName = 128
	MaxPurpose     = 1024
	MaxStartedBy   = 256
	MaxHealthPath  = 512
	// MaxCommand bounds the command line stored with an allocation (its
	// arguments together); a longer one is stored cut (CutCommand): the
	// service still runs with all of it.
	MaxCommand = 4096
)

// CheckText validates a user-supplied string that will be stored: valid
// UTF-8, no control characters, at most max bytes.
func CheckText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long; the limit is %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s contains a control character (%U)", what, r)
		}
	}
	return nil
}

// SafeText makes a string from outside (a process name, a command line)
// storable: control characters become '?', and it is cut to max bytes on a
// rune boundary.
func SafeText(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MaxEcho is how much of a user's string a message repeats.
const MaxEcho = 64

// Quote is s as a message repeats it: quoted, control characters escaped,
// and cut to MaxEcho bytes (on a rune boundary) with its length said when
// it is longer, so a 120 KB argument is never echoed whole.
func Quote(s string) string {
	if len(s) <= MaxEcho {
		return strconv.Quote(s)
	}
	cut := MaxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// CutCommand is argv as it is stored: whole arguments while they fit in
// max bytes together, the first that does not cut to what is left, and a
// last element saying how much was left out. argv itself is unchanged.
func CutCommand(argv []string, max int) []string {
	total := 0
	for _, a := range argv {
		total += len(a)
	}
	if total <= max {
		return argv
	}
	var out []string
	used := 0
	for _, a := range argv {
		if used+len(a) > max {
			if rest := max - used; rest > 0 {
				cut := rest
				for cut > 0 && !utf8.RuneStart(a[cut]) {
					cut--
				}
				out = append(out, a[:cut])
				used += cut
			}
			break
		}
		out = append(out, a)
		used += len(a)
	}
	return append(out, fmt.Sprintf("[... %d more bytes of the command line not stored]", total-used))
}

// LogFunc receives the log lines of the watchdog and what runs beside it
// (the portserver, the fleet publisher); nil drops them.
type LogFunc func(line string)

// Printf formats a line and hands it on; a nil LogFunc does nothing.
func (f LogFunc) Printf(format string, args ...any) {
	if f != nil {
		f(fmt.Sprintf(format, args...))
	}
}
