package probe

import (
	"errors"
	"net"
)

// Peer is the process at the other end of a Unix socket, as the kernel
// reports it when the connection was made: never what the peer says of
// itself.
type Peer struct {
	UID int // effective user ID
	PID int // in this process's PID namespace; 0 when the kernel cannot map it
}

// ErrNoPeerCred means the platform does not tell a Unix socket's peer.
var ErrNoPeerCred = errors.New("this platform does not tell who is at the other end of a Unix socket")

// PeerOf returns the credentials of c's peer (SO_PEERCRED on Linux,
// LOCAL_PEERCRED and LOCAL_PEERPID on macOS).
func PeerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	var perr error
	if err := raw.Control(func(fd uintptr) { p, perr = peerCred(int(fd)) }); err != nil {
		return Peer{}, err
	}
	return p, perr
}

// ProcessInfo is what can be told of a running process at one moment:
// every field comes from the same process (on Linux, read through one open
// /proc/PID folder, so a PID reused meanwhile is never mixed in).
type ProcessInfo struct {
	ID   Identity
	Name string // the executable's name (comm), possibly cut to 15 bytes
	// UID and EUID are the real and effective user IDs; -1 when unknown
	// or not asked for.
	UID, EUID int
	// Kernel marks a kernel thread, which never exits.
	Kernel bool
}

// OwnedBy reports whether uid may answer for the process: root for any,
// another user for a process whose real or effective user it is.
func (p ProcessInfo) OwnedBy(uid int) bool {
	return uid == 0 || (uid >= 0 && (p.UID == uid || p.EUID == uid))
}
