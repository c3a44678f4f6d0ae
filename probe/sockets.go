package probe

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Socket is one TCP or UDP socket whose local port is a given port, as the
// kernel lists it: a listener, a server's accepted connection, an outgoing
// connection the kernel gave that local port, a TIME_WAIT left by a closed
// connection, or a UDP socket bound to it.
type Socket struct {
	Proto  string         // "tcp" or "udp"
	State  string         // TCP's state names as ss(8) prints them (LISTEN, ESTAB, TIME-WAIT, ...); UDP: UNCONN or ESTAB
	Local  netip.AddrPort // an IPv4-mapped IPv6 address is kept as the kernel reports it
	Remote netip.AddrPort // the zero address for a listener or an unconnected UDP socket
	Inode  uint64         // 0 for a TIME_WAIT socket, which no process holds
	UID    int            // the user that made it; -1 when unknown (TIME_WAIT)
	// Expires is what is left of the socket's timer (TIME_WAIT: until the
	// kernel drops it), 0 when it runs no timer.
	Expires time.Duration
}

// Listening reports whether the socket is a TCP listener.
func (s Socket) Listening() bool { return s.Proto == "tcp" && s.State == "LISTEN" }

// TimeWait reports whether the socket is a closed connection's TIME_WAIT.
func (s Socket) TimeWait() bool { return s.Proto == "tcp" && s.State == "TIME-WAIT" }

// IPv6 reports whether the socket is an IPv6 one (which may also take IPv4
// connections, as IPv4-mapped addresses, unless it is IPv6-only).
func (s Socket) IPv6() bool { return s.Local.Addr().Is6() }

// Loopback reports whether a connection to 127.0.0.1 or ::1 can reach the
// socket's local address: a loopback or wildcard address.
func (s Socket) Loopback() bool {
	a := s.Local.Addr().Unmap()
	return a.IsLoopback() || a.IsUnspecified()
}

// tcpStates are TCP's states by the kernel's number (include/net/tcp_states.h),
// named as ss(8) names them.
var tcpStates = [...]string{1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
	6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN-RECV"}

// stateName names a socket state of proto by the kernel's number.
func stateName(proto string, st int) string {
	if proto == "udp" {
		if st == 1 {
			return "ESTAB"
		}
		return "UNCONN"
	}
	if st > 0 && st < len(tcpStates) && tcpStates[st] != "" {
		return tcpStates[st]
	}
	return "UNKNOWN-" + strconv.Itoa(st)
}

// userHZ is the clock-tick rate in which /proc/net/tcp prints timers.
const userHZ = 100

// ParseProcNetSockets calls fn for every socket of the text of
// /proc/net/{tcp,tcp6,udp,udp6} (proto "tcp" or "udp") whose local port is
// port (0: every socket). TIME_WAIT's remaining time comes from the
// "tm->when" field, in clock ticks.
func ParseProcNetSockets(r io.Reader, proto string, port int, fn func(Socket)) error {
	return procNetLines(r, func(f []string) error {
		local, err := parseProcAddr(f[1])
		if err != nil {
			return err
		}
		if port != 0 && int(local.Port()) != port {
			return nil
		}
		remote, err := parseProcAddr(f[2])
		if err != nil {
			return err
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return fmt.Errorf("malformed socket state %q", f[3])
		}
		s := Socket{Proto: proto, State: stateName(proto, int(st)), Local: local, Remote: remote, UID: -1}
		if uid, err := strconv.ParseUint(f[7], 10, 32); err == nil {
			s.UID = int(uid)
		}
		if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
			return fmt.Errorf("malformed inode %q", f[9])
		}
		if timer, when, ok := strings.Cut(f[5], ":"); ok && timer != "00" {
			if ticks, err := strconv.ParseUint(when, 16, 32); err == nil {
				s.Expires = time.Duration(ticks) * time.Second / userHZ
			}
		}
		if s.TimeWait() {
			s.UID, s.Inode = -1, 0
		}
		fn(s)
		return nil
	})
}

// parseProcAddr reads an address as /proc/net/tcp prints it (see
// ProcNetAddr): 8 or 32 hex digits, a colon, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("malformed socket address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("malformed socket address %q", s)
	}
	// Each 32-bit word is in the host's byte order.
	for i := 0; i+4 <= len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a, uint16(port)), nil
}
