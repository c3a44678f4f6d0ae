package probe

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// A loopback connection's client socket, looked up by its 4-tuple from the
// server's side, tells its user and what it has not read; sock_diag and
// /proc/net/tcp agree. The ports are the kernel's choice.
func TestLookupTCP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if strings.HasPrefix(addr, "[") {
				continue // no IPv6 here
			}
			t.Fatal(err)
		}
		defer l.Close()
		client, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		if _, err := server.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		// The client socket: local = the server's remote address.
		local := netip.MustParseAddrPort(server.RemoteAddr().String())
		remote := netip.MustParseAddrPort(server.LocalAddr().String())
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, errD := lookupDiag(local, remote)
			p, errP := lookupProc(local, remote)
			if errD == errDiagUnavailable {
				d, errD = p, nil // only /proc here
			}
			if errD != nil || errP != nil {
				t.Fatalf("%s: sock_diag %v, /proc %v", addr, errD, errP)
			}
			if errD == nil && d == p && p.RQueue == 100 {
				if p.UID != uint32(os.Getuid()) {
					t.Fatalf("%s: uid %d, want %d", addr, p.UID, os.Getuid())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: sock_diag %+v, /proc %+v; want 100 bytes unread", addr, d, p)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := LookupTCP(netip.MustParseAddrPort("127.0.0.1:1"), remote); err != ErrNoSocket {
			t.Fatalf("a socket that does not exist: %v", err)
		}
	}
}
