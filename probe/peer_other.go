//go:build !linux

package probe

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

var errNoPeerInfo = errors.New("sockets are only looked up on Linux")

// ErrNoSocket means no socket has the addresses asked for.
var ErrNoSocket = errors.New("no such socket")

// LookupTCP is Linux only: elsewhere a client is known by its address.
func LookupTCP(local, remote netip.AddrPort) (TCPSocket, error) { return TCPSocket{}, errNoPeerInfo }

// UnixUnread is Linux only (SIOCOUTQ).
func UnixUnread(c *net.UnixConn) (int, error) { return 0, errNoPeerInfo }

// SetTCPUserTimeout is Linux only; elsewhere the system's retransmission
// limits end a connection to a vanished peer.
func SetTCPUserTimeout(c *net.TCPConn, d time.Duration) error { return nil }
