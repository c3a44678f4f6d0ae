package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// listenersNetlink asks the kernel for the LISTEN TCP sockets over
// NETLINK_SOCK_DIAG, as ss(8) does. The kernel filters by state, so the cost
// does not grow with the host's established and TIME_WAIT connections, which
// /proc/net/tcp lists one line each.
func listenersNetlink() (map[int][]uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	out := map[int][]uint64{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := diagDump(fd, family, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const (
	sizeofNlMsghdr      = 16
	sizeofInetDiagReqV2 = 56 // family, protocol, ext, pad, states u32, sockid (48)
	sizeofInetDiagMsg   = 72 // family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode
	tcpListen           = 10
)

var diagSeq atomic.Uint32

func diagDump(fd int, family uint8, out map[int][]uint64) error {
	seq := diagSeq.Add(1)
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], seq)
	req[16] = family
	req[17] = unix.IPPROTO_TCP
	ne.PutUint32(req[20:], 1<<tcpListen)
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
		done, err := parseDiag(buf[:n], seq, out)
		if err != nil || done {
			return err
		}
	}
}

// parseDiag reads one datagram of sock_diag answers; done at NLMSG_DONE.
func parseDiag(b []byte, seq uint32, out map[int][]uint64) (done bool, err error) {
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
				m := b[sizeofNlMsghdr:l]
				if len(m) >= sizeofInetDiagMsg && m[1] == tcpListen {
					port := int(binary.BigEndian.Uint16(m[4:]))
					inode := uint64(ne.Uint32(m[68:]))
					out[port] = append(out[port], inode)
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
