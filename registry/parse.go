package registry

import (
	"errors"
	"fmt"
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

// Parse decodes and validates a registry file's contents. A file that is
// not a registry is an error, never an empty registry.
func Parse(data []byte) (*Registry, error) {
	return parse(string(data), true)
}

// parse is Parse on a string, which the registry keeps substrings of.
func parse(data string, keepText bool) (*Registry, error) {
	trimmed := strings.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("file is empty, not a registry (expected a JSON object)")
	}
	if trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	r, ok := decodeFast(trimmed, keepText)
	if !ok {
		r = new(Registry)
		// Called directly: json.Unmarshal would validate the whole file
		// once more before handing it over.
		if err := r.UnmarshalJSON([]byte(trimmed)); err != nil {
			return nil, err
		}
	}
	for key, a := range r.Allocations {
		if err := a.validateStored(key); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (a *Allocation) validateStored(key string) error {
	port, ok := portKey(key)
	if !ok {
		return fmt.Errorf("allocation key %q is not a port number", key)
	}
	if a.Port != port {
		return fmt.Errorf("allocation %q: field \"port\" is %d, not %d", key, a.Port, port)
	}
	if a.ServiceName == "" {
		return fmt.Errorf("allocation %q: field \"service_name\" is empty", key)
	}
	if a.PID < 0 {
		return fmt.Errorf("allocation %q: field \"pid\" is negative", key)
	}
	return nil
}

// portKey reads an allocation key: a port number 1-65535 written the one
// way strconv.Itoa writes it.
func portKey(key string) (int, bool) {
	if len(key) == 0 || len(key) > 5 || key[0] == '0' {
		return 0, false
	}
	port := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		port = port*10 + int(c-'0')
	}
	return port, port <= 65535
}

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
