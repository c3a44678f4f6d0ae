package probe

import (
	"net"
	"testing"
)

// The netlink and /proc views of listening sockets agree.
func TestListenersNetlinkMatchesProc(t *testing.T) {
	if !ProcNetAvailable() {
		t.Skip("no /proc/net/tcp")
	}
	l, err := net.Listen("tcp", "127.0.0.1:22010")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l6, err := net.Listen("tcp6", "[::1]:22011")
	if err == nil {
		defer l6.Close()
	}
	nl, err := listenersNetlink()
	if err != nil {
		t.Skipf("sock_diag not available: %v", err)
	}
	pr, err := listenersProc()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{22010, 22011} {
		if port == 22011 && l6 == nil {
			continue
		}
		if len(nl[port]) != 1 || len(pr[port]) != 1 || nl[port][0] != pr[port][0] {
			t.Fatalf("port %d: netlink %v, proc %v", port, nl[port], pr[port])
		}
	}
}
