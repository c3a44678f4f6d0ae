package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// SocketsOnPort lists the TCP and UDP sockets of this network namespace,
// IPv4 and IPv6, in any state, whose local port is port: over sock_diag
// (which gives TIME_WAIT's remaining time in milliseconds), else from
// /proc/net/{tcp,tcp6,udp,udp6}.
func SocketsOnPort(port int) ([]Socket, error) {
	if out, err := socketsNetlink(port, []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP}, allStates); err == nil {
		return out, nil
	}
	return socketsProc("/proc/net", port, nil)
}

// ListenersOn lists the TCP listeners of this network namespace on port,
// IPv4 and IPv6: SocketsOnPort for LISTEN sockets only, which the kernel
// filters, so a look costs little however many connections the host has.
func ListenersOn(port int) ([]Socket, error) {
	if out, err := socketsNetlink(port, []uint8{unix.IPPROTO_TCP}, 1<<tcpListen); err == nil {
		return out, nil
	}
	return socketsProc("/proc/net", port, func(s Socket) bool { return s.Listening() })
}

// SocketsOnPortIn is SocketsOnPort in the network namespace of process pid
// (a PID in this /proc's view), from /proc/PID/net.
func SocketsOnPortIn(pid, port int) ([]Socket, error) {
	return socketsProc("/proc/"+strconv.Itoa(pid)+"/net", port, nil)
}

// allStates asks sock_diag for sockets in every state.
const allStates = 0xffffffff

// socketsNetlink asks sock_diag for the sockets of protos in states (a
// mask of 1<<state) and keeps those on port.
func socketsNetlink(port int, protos []uint8, states uint32) ([]Socket, error) {
	fd, err := openDiag()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []Socket
	for _, proto := range protos {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			err := diagDump(fd, family, proto, states, func(b []byte, seq uint32) (bool, error) {
				return walkDiag(b, seq, func(m []byte) {
					if s := diagSocket(m, proto); int(s.Local.Port()) == port {
						out = append(out, s)
					}
				})
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// diagSocket reads one inet_diag_msg (at least sizeofInetDiagMsg bytes).
func diagSocket(m []byte, proto uint8) Socket {
	ne := binary.NativeEndian
	name := "tcp"
	if proto == unix.IPPROTO_UDP {
		name = "udp"
	}
	addr := func(raw []byte, port []byte) netip.AddrPort {
		var a netip.Addr
		if m[0] == unix.AF_INET {
			a = netip.AddrFrom4([4]byte(raw[:4]))
		} else {
			a = netip.AddrFrom16([16]byte(raw[:16]))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(port))
	}
	s := Socket{Proto: name, State: stateName(name, int(m[1])), Local: addr(m[8:24], m[4:6]), Remote: addr(m[24:40], m[6:8]),
		UID: int(ne.Uint32(m[64:])), Inode: uint64(ne.Uint32(m[68:]))}
	if m[2] != 0 { // a timer runs
		s.Expires = time.Duration(ne.Uint32(m[52:])) * time.Millisecond
	}
	if s.TimeWait() {
		s.UID, s.Inode = -1, 0 // a TIME_WAIT socket keeps neither
	}
	return s
}

// socketsProc reads the sockets on port from the tables in dir, those keep
// approves (all when nil).
func socketsProc(dir string, port int, keep func(Socket) bool) ([]Socket, error) {
	var out []Socket
	read := false
	for _, f := range []struct{ file, proto string }{{"tcp", "tcp"}, {"tcp6", "tcp"}, {"udp", "udp"}, {"udp6", "udp"}} {
		data, err := os.ReadFile(dir + "/" + f.file)
		if err != nil {
			continue
		}
		read = true
		err = ParseProcNetSockets(bytes.NewReader(data), f.proto, port, func(s Socket) {
			if keep == nil || keep(s) {
				out = append(out, s)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, f.file, err)
		}
	}
	if !read {
		return nil, fmt.Errorf("cannot read the socket tables in %s", dir)
	}
	return out, nil
}

// OtherNetNamespaces returns one process (a PID in this /proc's view) for
// each network namespace other than this process's that this user can see
// into, keyed by the namespace's inode.
func OtherNetNamespaces() map[uint64]int {
	_, self := SelfNamespaces()
	out := map[uint64]int{}
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns := nsInode(e.Name(), "net")
		if ns == 0 || ns == self {
			continue
		}
		if _, ok := out[ns]; !ok {
			out[ns] = pid
		}
	}
	return out
}
