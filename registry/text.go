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
