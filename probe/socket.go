package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
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
		l, err := net.Listen("tcp6", "[::1]:0")
		if err == nil {
			l.Close()
			hasIPv6 = true
		}
	})
	return hasIPv6
}

// ErrInUse means something else is listening on (or bound to) the port.
var ErrInUse = errors.New("in use")

// Bindable checks that port can be bound and listened on right now on the
// wildcard address for IPv4 and, where the host has IPv6, for IPv6. On Linux
// a wildcard bind fails when anything listens on the port on any address
// (127.0.0.1, ::1, 0.0.0.0), so a port an unmanaged process serves is never
// handed out. Go sets SO_REUSEADDR on listeners, so a port whose old
// connections sit in TIME_WAIT counts as free, as it does for servers.
func Bindable(port int) error {
	addr4 := ":" + strconv.Itoa(port)
	l4, err := net.Listen("tcp4", addr4)
	if err != nil {
		return bindErr(port, err)
	}
	defer l4.Close()
	if HasIPv6() {
		l6, err := net.Listen("tcp6", "[::]:"+strconv.Itoa(port))
		if err != nil {
			return bindErr(port, err)
		}
		l6.Close()
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
