package probe

import (
	"net"
	"os"
	"regexp"
	"strings"
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

// A port whose old connection sits in TIME_WAIT is free: servers bind it
// with SO_REUSEADDR.
func TestTimeWaitCountsAsFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:22020")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", "127.0.0.1:22020")
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close() // the server side closes first, so it is the one in TIME_WAIT
	buf := make([]byte, 1)
	c.Read(buf)
	c.Close()
	l.Close()
	data, _ := os.ReadFile("/proc/net/tcp")
	// Local address 127.0.0.1:22020 is 0100007F:5604; state 06 is TIME_WAIT.
	if !strings.Contains(string(data), ":5604") || !regexp.MustCompile(`0100007F:5604 \S+ 06 `).Match(data) {
		t.Skip("no TIME_WAIT socket seen; nothing to test")
	}
	if err := Bindable(22020); err != nil {
		t.Fatalf("a port in TIME_WAIT is not free: %v", err)
	}
}
