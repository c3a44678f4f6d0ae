package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// listenersNetlink asks the kernel for the LISTEN TCP sockets over
// NETLINK_SOCK_DIAG, as ss(8) does. The kernel filters by state, so the cost
// does not grow with the host's established and TIME_WAIT connections, which
// /proc/net/tcp lists one line each.
func listenersNetlink() (map[int][]uint64, error) {
	fd, err := openDiag()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[int][]uint64{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := diagDump(fd, family, unix.IPPROTO_TCP, 1<<tcpListen, func(b []byte, seq uint32) (bool, error) { return parseDiag(b, seq, out) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openDiag opens a NETLINK_SOCK_DIAG socket.
func openDiag() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

const (
	sizeofNlMsghdr      = 16
	sizeofInetDiagReqV2 = 56 // family, protocol, ext, pad, states u32, sockid (48)
	sizeofInetDiagMsg   = 72 // family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode
	tcpListen           = 10
)

var diagSeq atomic.Uint32

// diagDump asks for every socket of family and protocol in one of states
// (a mask of 1<<state) and hands each datagram of the answer to parse.
func diagDump(fd int, family, protocol uint8, states uint32, parse func(b []byte, seq uint32) (done bool, err error)) error {
	seq := diagSeq.Add(1)
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], seq)
	req[16] = family
	req[17] = protocol
	ne.PutUint32(req[20:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		done, err := parse(buf[:n], seq)
		if err != nil || done {
			return err
		}
	}
}

// parseDiag reads one datagram of sock_diag answers to a dump of LISTEN
// sockets; done at NLMSG_DONE.
func parseDiag(b []byte, seq uint32, out map[int][]uint64) (done bool, err error) {
	return walkDiag(b, seq, func(m []byte) {
		if m[1] == tcpListen {
			port := int(binary.BigEndian.Uint16(m[4:]))
			out[port] = append(out[port], uint64(binary.NativeEndian.Uint32(m[68:])))
		}
	})
}

// walkDiag calls fn with each inet_diag_msg (at least sizeofInetDiagMsg
// bytes) of one datagram of answers to the dump numbered seq; done at
// NLMSG_DONE.
func walkDiag(b []byte, seq uint32, fn func(m []byte)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < sizeofNlMsghdr || l > len(b) {
			return false, fmt.Errorf("sock_diag: malformed message length %d", l)
		}
		if ne.Uint32(b[8:]) == seq {
			switch typ {
			case unix.NLMSG_DONE:
				return true, nil
			case unix.NLMSG_ERROR:
				if l >= sizeofNlMsghdr+4 {
					if errno := int32(ne.Uint32(b[16:])); errno != 0 {
						return false, os.NewSyscallError("sock_diag", unix.Errno(-errno))
					}
				}
				return true, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if m := b[sizeofNlMsghdr:l]; len(m) >= sizeofInetDiagMsg {
					fn(m)
				}
			}
		}
		adv := (l + 3) &^ 3
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return false, nil
}

// errDiagUnavailable means sock_diag cannot be asked here (no netlink, or
// a kernel without inet_diag): /proc is read instead.
var errDiagUnavailable = errors.New("sock_diag is not available")

// lookupDiag asks sock_diag for the one TCP socket with these addresses
// (the kernel looks it up by its 4-tuple, as `ss` does with a filter).
func lookupDiag(local, remote netip.AddrPort) (TCPSocket, error) {
	fd, err := openDiag()
	if err != nil {
		return TCPSocket{}, errDiagUnavailable
	}
	defer unix.Close(fd)
	s, err := diagOne(fd, local, remote)
	if errors.Is(err, ErrNoSocket) && local.Addr().Is4() {
		s, err = diagOne(fd, mapped(local), mapped(remote))
	}
	return s, err
}

func diagOne(fd int, local, remote netip.AddrPort) (TCPSocket, error) {
	seq := diagSeq.Add(1)
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	r := req[sizeofNlMsghdr:]
	r[0] = unix.AF_INET6
	if local.Addr().Is4() {
		r[0] = unix.AF_INET
	}
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // any state
	id := r[8:]                     // inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	copy(id[4:20], local.Addr().AsSlice())
	copy(id[20:36], remote.Addr().AsSlice())
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return TCPSocket{}, errDiagUnavailable
	}
	buf := make([]byte, 8<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return TCPSocket{}, err
		}
		if s, done, err := parseDiagOne(buf[:n], seq); done {
			return s, err
		}
	}
}

// parseDiagOne reads the answer to a lookup of one socket.
func parseDiagOne(b []byte, seq uint32) (s TCPSocket, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < sizeofNlMsghdr || l > len(b) {
			return s, true, fmt.Errorf("sock_diag: malformed message length %d", l)
		}
		if ne.Uint32(b[8:]) == seq {
			switch ne.Uint16(b[4:]) {
			case unix.NLMSG_ERROR:
				errno := unix.Errno(0)
				if l >= sizeofNlMsghdr+4 {
					errno = unix.Errno(-int32(ne.Uint32(b[16:])))
				}
				switch errno {
				case unix.ENOENT:
					return s, true, ErrNoSocket
				case unix.EINVAL, unix.EOPNOTSUPP, unix.ENOSYS:
					return s, true, errDiagUnavailable
				}
				return s, true, os.NewSyscallError("sock_diag", errno)
			case unix.SOCK_DIAG_BY_FAMILY:
				m := b[sizeofNlMsghdr:l]
				if len(m) < sizeofInetDiagMsg {
					return s, true, fmt.Errorf("sock_diag: short answer")
				}
				return TCPSocket{RQueue: ne.Uint32(m[56:]), WQueue: ne.Uint32(m[60:]), UID: ne.Uint32(m[64:])}, true, nil
			case unix.NLMSG_DONE:
				return s, true, ErrNoSocket
			}
		}
		adv := (l + 3) &^ 3
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return s, false, nil
}
