package registry

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PlainError words real errors of the OS without Go's layers: each row
// makes the error for real, wraps it as gracectl's messages do, and checks
// the words and that no Go text is left.
func TestPlainError(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errOf := func(err error) error {
		if err == nil {
			t.Fatal("no error")
		}
		return fmt.Errorf("cannot do it: %w", err)
	}
	_, openErr := os.Open(filepath.Join(dir, "missing"))
	_, listenErr := net.Listen("tcp", l.Addr().String())
	_, unixErr := net.Listen("unix", filepath.Join(dir, "no", "such", "sock"))
	for _, c := range []struct {
		err        error
		want, hint string
		gone       string
	}{
		{errOf(os.Mkdir("/proc/gracectl-test", 0o755)), "folder /proc/gracectl-test cannot be made: the folder above it does not exist or takes no new folders", "choose a folder", "mkdir"},
		{errOf(openErr), filepath.Join(dir, "missing") + " does not exist", "", "no such file"},
		{errOf(os.Mkdir(filepath.Join(file, "sub"), 0o755)), "a part of " + filepath.Join(file, "sub") + " is a file, not a folder", "", "not a directory"},
		{errOf(listenErr), "address " + l.Addr().String() + " is in use by another program", "gracectl who", "bind:"},
		{errOf(unixErr), "cannot be made there: its folder does not exist", "choose a folder", "listen unix"},
	} {
		msg, hint := PlainError(c.err)
		if !strings.HasPrefix(msg, "cannot do it: ") || !strings.Contains(msg, c.want) || strings.Contains(msg, c.gone) || !strings.Contains(hint, c.hint) {
			t.Errorf("%v\n  said %q (hint %q)\n  want %q (hint %q), without %q", c.err, msg, hint, c.want, c.hint, c.gone)
		}
	}
	if msg, hint := PlainError(fmt.Errorf("no OS error here")); msg != "no OS error here" || hint != "" {
		t.Errorf("a message without an OS error changed: %q %q", msg, hint)
	}
}
