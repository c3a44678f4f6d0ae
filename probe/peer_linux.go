package probe

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LookupTCP asks the kernel for the TCP socket of this host whose local
// address is local and remote address remote (its 4-tuple): over
// sock_diag, else from /proc/net/tcp{,6}. An IPv4 address is also looked
// for as IPv4-mapped IPv6, as a dual-stack socket holds it.
func LookupTCP(local, remote netip.AddrPort) (TCPSocket, error) {
	local, remote = unmapped(local), unmapped(remote)
	if s, err := lookupDiag(local, remote); err == nil || !errors.Is(err, errDiagUnavailable) {
		return s, err
	}
	return lookupProc(local, remote)
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func mapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}

// ErrNoSocket means no socket has the addresses asked for.
var ErrNoSocket = errors.New("no such socket")

func lookupProc(local, remote netip.AddrPort) (TCPSocket, error) {
	try := func(file string, l, r netip.AddrPort) (TCPSocket, bool, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return TCPSocket{}, false, err
		}
		return ParseProcNetTCPSocket(bytes.NewReader(data), ProcNetAddr(l), ProcNetAddr(r))
	}
	if local.Addr().Is4() {
		if s, ok, err := try("/proc/net/tcp", local, remote); ok || err != nil {
			return s, err
		}
		local, remote = mapped(local), mapped(remote)
	}
	if s, ok, err := try("/proc/net/tcp6", local, remote); ok || err != nil {
		return s, err
	}
	return TCPSocket{}, ErrNoSocket
}

// UnixUnread is the memory the kernel holds for what this end of a Unix
// stream socket wrote and the other end has not read yet (SIOCOUTQ).
func UnixUnread(c *net.UnixConn) (int, error) {
	var n int
	err := control(c, func(fd int) error {
		var err error
		n, err = unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		return err
	})
	return n, err
}

// SetTCPUserTimeout makes the kernel end the connection when what was
// written to it stays unacknowledged for d, or the other end's window
// stays shut that long (TCP_USER_TIMEOUT): a peer that vanished without a
// word is noticed then, not after the default of about 15 minutes of
// retransmissions.
func SetTCPUserTimeout(c *net.TCPConn, d time.Duration) error {
	return control(c, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}

func control(c syscall.Conn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
