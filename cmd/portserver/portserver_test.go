package portserver

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// Resolve: each kind of --portserver value, and each mistake said as a
// usage error (AddressError) naming what to give instead.
func TestResolve(t *testing.T) {
	private := t.TempDir() // 0700, owned by this user
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	store := &registry.Store{Root: t.TempDir()}
	for _, tc := range []struct {
		value, want, err string
	}{
		{value: "@gracectl-test", want: "@gracectl-test"},
		{value: filepath.Join(private, "ps.sock"), want: filepath.Join(private, "ps.sock")},
		{value: "", err: "is not an address"},
		{value: "@", err: "is not an address"},
		{value: "@a\x00b", err: "cannot hold a NUL byte"},
		{value: "@" + strings.Repeat("x", 110), err: "over the 103 a Unix socket address can hold"},
		{value: filepath.Join(open, "ps.sock"), err: "use a folder only you (and your group) can write"},
		{value: filepath.Join(private, "missing", "ps.sock"), err: "does not exist"},
	} {
		got, err := Resolve(tc.value, store)
		var ae *AddressError
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
		case tc.err != "" && (!errors.As(err, &ae) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Resolve(%q) = %q, %v; want an AddressError with %q", tc.value, got, err, tc.err)
		}
	}
	got, err := Resolve(DefaultAddress, store)
	if err != nil || got != filepath.Join(store.Root, registry.RunDir, SocketName) {
		t.Errorf("Resolve(default) = %q, %v", got, err)
	}
}

// Listen replaces a socket nothing answers on, refuses one that is served
// (InUseError), and leaves anything that is not a socket alone.
func TestListenStaleAndInUse(t *testing.T) {
	dir := t.TempDir()
	addr := filepath.Join(dir, "ps.sock")
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	var iu *InUseError
	if _, err := Listen(addr); !errors.As(err, &iu) {
		t.Errorf("a second Listen on a served socket: %v, want InUseError", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays, with nobody behind it
	l, err = Listen(addr)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Error("Listen touched a regular file")
	}
}

// The ledger: connections per user, ports per client and per user, each
// limit refusing with its own key; a port handed out again counts once; a
// client that has ended stops counting once it is looked at.
func TestLedgerLimits(t *testing.T) {
	l := newLedger()
	if !l.enter(1000, 2) || !l.enter(1000, 2) || l.enter(1000, 2) {
		t.Error("the third connection of a user with a limit of 2 was let in, or an earlier one refused")
	}
	l.leave(1000)
	if !l.enter(1000, 2) {
		t.Error("a connection after one left was refused")
	}
	if !l.enter(1001, 0) {
		t.Error("limit 0 refused a connection")
	}

	me := probe.Self()
	lim := Limits{UserPorts: 3, ClientPorts: 2}
	l.hold(20000, 1000, me)
	l.hold(20001, 1000, me)
	if key, why := l.room(1000, me, lim); key != "client "+strconv.Itoa(me.PID) || !strings.Contains(why, "the limit per client") {
		t.Errorf("a client at its limit: %q %q", key, why)
	}
	l.hold(20001, 1000, me) // handed out again: still two
	other := probe.Identity{PID: 1}
	if key, why := l.room(1000, other, lim); key != "" {
		t.Errorf("another client of the user, under both limits, was refused: %q %q", key, why)
	}
	l.hold(20002, 1000, other)
	if key, why := l.room(1000, other, lim); key != "user 1000" || !strings.Contains(why, "the limit per user") {
		t.Errorf("a user at its limit: %q %q", key, why)
	}

	// A client that ended: its ports stop counting when a limit is met.
	gone := probe.Identity{PID: me.PID, Start: me.Start + 1} // never alive
	l2 := newLedger()
	l2.hold(21000, 1002, gone)
	l2.hold(21001, 1002, gone)
	if key, why := l2.room(1002, gone, lim); key != "" {
		t.Errorf("the ports of a client that ended still count: %q %q", key, why)
	}
}

// notices: the first refusal of a kind is logged, the repeats within the
// minute are not, and the next line says how many were held back.
func TestNoticesOnePerMinute(t *testing.T) {
	var n notices
	var lines []string
	log := func(s string) { lines = append(lines, s) }
	for range 5 {
		n.say(log, "k", "refused")
	}
	n.say(log, "other", "refused too")
	if len(lines) != 2 {
		t.Fatalf("logged %q, want one line per key", lines)
	}
	n.mu.Lock()
	n.last["k"] = n.last["k"].Add(-noticeEvery)
	n.mu.Unlock()
	n.say(log, "k", "refused")
	if got := lines[len(lines)-1]; got != "refused (4 more like it since the last such line)" {
		t.Errorf("after the minute: %q", got)
	}
}
