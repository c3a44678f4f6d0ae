package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
)

// Who a stream's client is, as far as the kernel can tell: on loopback and
// on a Unix socket, the user who made the client's socket (looked up by
// the connection's 4-tuple with sock_diag, or SO_PEERCRED); from another
// host, its address (an IPv6 address's /64, which one host usually has
// whole). Streams are counted per client, so that one user or host cannot
// take the slots of all.

// MaxStreamsPerClient is the number of streams one client (a local user,
// or a remote address) may hold at once.
const MaxStreamsPerClient = 8

type connKey struct{}

// withConn is the server's ConnContext: handlers find the connection in
// their request's context.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// peer is the client at the other end of a request's connection.
type peer struct {
	key    string // whose slots the stream takes: "uid 1000", "address 192.0.2.7"
	conn   net.Conn
	unread func() (int, bool) // bytes sent to the client and not read by it yet, if that can be told
}

func (p peer) close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// keepAlive makes a TCP connection end when what is written to it stays
// unacknowledged for d: the client vanished.
func (p peer) keepAlive(d time.Duration) {
	if tc, ok := rawConn(p.conn).(*net.TCPConn); ok {
		_ = probe.SetTCPUserTimeout(tc, d)
	}
}

func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

func unknownUnread() (int, bool) { return 0, false }

// peerOf identifies the client of r.
func peerOf(r *http.Request) peer {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	p := peer{key: "address " + r.RemoteAddr, conn: c, unread: unknownUnread}
	switch raw := rawConn(c).(type) {
	case *net.UnixConn:
		p.key = "a Unix socket client"
		if cred, err := probe.PeerOf(raw); err == nil {
			p.key = "uid " + strconv.Itoa(cred.UID)
		}
		p.unread = func() (int, bool) {
			n, err := probe.UnixUnread(raw)
			return n, err == nil
		}
	case *net.TCPConn:
		local, remote := raw.LocalAddr().(*net.TCPAddr).AddrPort(), raw.RemoteAddr().(*net.TCPAddr).AddrPort()
		p.key = "address " + clientAddr(remote.Addr())
		if !remote.Addr().Unmap().IsLoopback() {
			break
		}
		// The client's socket is this host's: its local address is our
		// remote one.
		if sock, err := probe.LookupTCP(remote, local); err == nil {
			p.key = "uid " + strconv.FormatUint(uint64(sock.UID), 10)
			p.unread = func() (int, bool) { return loopbackUnread(local, remote) }
		}
	}
	return p
}

// loopbackUnread is what waits for a loopback client: in its socket's
// receive queue, and in ours, not yet taken by it.
func loopbackUnread(local, remote netip.AddrPort) (int, bool) {
	theirs, err1 := probe.LookupTCP(remote, local)
	ours, err2 := probe.LookupTCP(local, remote)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return int(theirs.RQueue) + int(ours.WQueue), true
}

// clientAddr is the address a remote client is counted by: an IPv4
// address, or an IPv6 address's /64.
func clientAddr(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// slots counts the open streams, in all and per client.
type slots struct {
	mu    sync.Mutex
	total int
	per   map[string]int
}

// refusal is why a stream is not opened.
type refusal struct {
	code   int
	reason string // the metric's label
	msg    string
}

// take holds a slot for a stream of client key until release is called.
func (s *slots) take(key string) (release func(), refused *refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.per[key] >= MaxStreamsPerClient:
		return nil, &refusal{http.StatusTooManyRequests, "client",
			fmt.Sprintf("too many event streams for %s (at most %d per client)", key, MaxStreamsPerClient)}
	case s.total >= MaxStreams:
		return nil, &refusal{http.StatusServiceUnavailable, "total", fmt.Sprintf("too many event streams (at most %d)", MaxStreams)}
	}
	if s.per == nil {
		s.per = map[string]int{}
	}
	s.per[key]++
	s.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.per[key]--; s.per[key] == 0 {
				delete(s.per, key)
			}
		})
	}, nil
}

func (s *slots) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}
