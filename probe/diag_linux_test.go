package probe

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry/testenv"
	"golang.org/x/sys/unix"
)

// The netlink and /proc views of listening sockets agree.
func TestListenersNetlinkMatchesProc(t *testing.T) {
	ports := testenv.Ports(t, 2)
	if !ProcNetAvailable() {
		t.Skip("no /proc/net/tcp")
	}
	l, err := net.Listen("tcp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l6, err := net.Listen("tcp6", net.JoinHostPort("::1", ports.P(1)))
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
	for _, port := range []int{ports.Port(0), ports.Port(1)} {
		if port == ports.Port(1) && l6 == nil {
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
	ports := testenv.Ports(t, 1)
	l, err := net.Listen("tcp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ports.Addr(0))
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
	// Local address 127.0.0.1:PORT is 0100007F:PORT in hex; state 06 is
	// TIME_WAIT.
	hex := fmt.Sprintf(":%04X", ports.Port(0))
	if !strings.Contains(string(data), hex) || !regexp.MustCompile(`0100007F`+hex+` \S+ 06 `).Match(data) {
		t.Skip("no TIME_WAIT socket seen; nothing to test")
	}
	if err := Bindable(ports.Port(0)); err != nil {
		t.Fatalf("a port in TIME_WAIT is not free: %v", err)
	}
}

// sock_diag and /proc list the same sockets on a port: a listener, an
// established connection both ways, a UDP socket.
func TestSocketsOnPortNetlinkMatchesProc(t *testing.T) {
	ports := testenv.Ports(t, 1)
	l, err := net.Listen("tcp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := net.ListenPacket("udp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	nl, err := socketsNetlink(ports.Port(0), []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP}, allStates)
	if err != nil {
		t.Skipf("sock_diag not available: %v", err)
	}
	pr, err := socketsProc("/proc/net", ports.Port(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := func(ss []Socket) map[string]bool {
		m := map[string]bool{}
		for _, s := range ss {
			m[fmt.Sprintf("%s %s %s %s %d %d", s.Proto, s.State, s.Local, s.Remote, s.Inode, s.UID)] = true
		}
		return m
	}
	kn, kp := key(nl), key(pr)
	if len(kn) != 3 || fmt.Sprint(kn) != fmt.Sprint(kp) {
		t.Fatalf("netlink %v\nproc %v", kn, kp)
	}
	ls, err := ListenersOn(ports.Port(0))
	if err != nil || len(ls) != 1 || !ls[0].Listening() || ls[0].Local.String() != ports.Addr(0) || !ls[0].Loopback() {
		t.Fatalf("ListenersOn: %+v, %v", ls, err)
	}
}

// Whatever a sock_diag answer holds, reading it neither panics nor reads
// past a message: walkDiag hands diagSocket whole inet_diag_msgs only.
func FuzzWalkDiag(f *testing.F) {
	msg := make([]byte, sizeofNlMsghdr+sizeofInetDiagMsg)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint32(msg[8:], 7)
	msg[16], msg[17], msg[18] = unix.AF_INET6, 6, 3 // TIME-WAIT, its timer
	binary.BigEndian.PutUint16(msg[20:], 8000)
	f.Add(msg, uint32(7))
	done := make([]byte, sizeofNlMsghdr)
	binary.NativeEndian.PutUint32(done[0:], sizeofNlMsghdr)
	binary.NativeEndian.PutUint16(done[4:], unix.NLMSG_DONE)
	binary.NativeEndian.PutUint32(done[8:], 7)
	f.Add(append(append([]byte{}, msg...), done...), uint32(7))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		_, _ = walkDiag(b, seq, func(m []byte) {
			if len(m) < sizeofInetDiagMsg {
				t.Fatalf("a message of %d bytes", len(m))
			}
			for _, proto := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
				if s := diagSocket(m, proto); s.Expires < 0 {
					t.Fatalf("negative timer: %+v", s)
				}
			}
		})
	})
}
