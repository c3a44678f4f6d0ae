package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var ipv6Once sync.Once
var hasIPv6 bool

// HasIPv6 reports whether the host can bind an IPv6 socket at all.
func HasIPv6() bool {
	ipv6Once.Do(func() {
		hasIPv6 = listenOnce(&syscall.SockaddrInet6{Addr: [16]byte{15: 1}}) == nil
	})
	return hasIPv6
}

// ErrInUse means something else is listening on (or bound to) the port.
var ErrInUse = errors.New("in use")

// Bindable checks that port can be bound and listened on right now on the
// wildcard address for IPv4 and, where the host has IPv6, for IPv6. On Linux
// a wildcard bind fails when anything listens on the port on any address
// (127.0.0.1, ::1, 0.0.0.0), so a port an unmanaged process serves is never
// handed out. SO_REUSEADDR is set, as Go and most servers set it on their
// listeners, so a port whose old connections sit in TIME_WAIT counts as free.
func Bindable(port int) error {
	if err := listenOnce(&syscall.SockaddrInet4{Port: port}); err != nil {
		return bindErr(port, err)
	}
	if HasIPv6() {
		if err := listenOnce(&syscall.SockaddrInet6{Port: port}); err != nil {
			return bindErr(port, err)
		}
	}
	return nil
}

// BindableTCPUDP is Bindable for UDP as well: the contract of portpicker's
// portserver, whose clients may bind either.
func BindableTCPUDP(port int) error {
	if err := Bindable(port); err != nil {
		return err
	}
	if err := bindOnce(&syscall.SockaddrInet4{Port: port}, syscall.SOCK_DGRAM); err != nil {
		return bindErr(port, err)
	}
	if HasIPv6() {
		if err := bindOnce(&syscall.SockaddrInet6{Port: port}, syscall.SOCK_DGRAM); err != nil {
			return bindErr(port, err)
		}
	}
	return nil
}

func listenOnce(sa syscall.Sockaddr) error { return bindOnce(sa, syscall.SOCK_STREAM) }

// bindOnce binds a socket of type typ to sa (and listens, for TCP) and
// closes it: plain system
// calls, not a net.Listener, which would also register the socket with the
// runtime's poller. An IPv6 socket is IPv6-only, as Go's "tcp6" listeners
// are, so that the IPv4 and IPv6 wildcards are tested one by one.
func bindOnce(sa syscall.Sockaddr, typ int) error {
	family := syscall.AF_INET
	if _, ok := sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	// Under ForkLock, as the net package does, so that a child started
	// meanwhile never inherits the socket.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(family, typ, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if family == syscall.AF_INET6 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	// SO_REUSEADDR for TCP only: on UDP it would let the test share a port
	// with a socket that set it too.
	if typ == syscall.SOCK_STREAM {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if typ != syscall.SOCK_STREAM {
		return nil
	}
	if err := syscall.Listen(fd, 1); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
}

func bindErr(port int, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("port %d: %w", port, ErrInUse)
	}
	return fmt.Errorf("port %d: %w", port, err)
}

// DialListening reports whether a TCP connect to port on 127.0.0.1 or ::1
// succeeds within timeout. It is the fallback where the socket tables in
// /proc cannot be read.
func DialListening(ctx context.Context, port int, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}
