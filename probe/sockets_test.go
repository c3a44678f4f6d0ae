package probe

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Lines as the kernel prints them (x86: each 32-bit word of an address in
// little-endian order).
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:9C40 06 00000000:00000000 03:00000FA0 00000000     0        0 0 3 0000000000000000
   2: 0100007F:1F40 0100007F:9C41 01 00000000:00000000 02:000001F4 00000000  1000        0 123457 2 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123458 1 0000000000000000 100 0 0 10 0
`

const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F40 00000000000000000000000001000000:D000 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetSockets(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample lines are a little-endian host's")
	}
	var got []Socket
	if err := ParseProcNetSockets(strings.NewReader(procTCP), "tcp", 8000, func(s Socket) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Proto: "tcp", State: "LISTEN", Local: netip.MustParseAddrPort("127.0.0.1:8000"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), Inode: 123456, UID: 1000},
		{Proto: "tcp", State: "TIME-WAIT", Local: netip.MustParseAddrPort("127.0.0.1:8000"), Remote: netip.MustParseAddrPort("127.0.0.1:40000"), UID: -1, Expires: 40 * time.Second},
		{Proto: "tcp", State: "ESTAB", Local: netip.MustParseAddrPort("127.0.0.1:8000"), Remote: netip.MustParseAddrPort("127.0.0.1:40001"), Inode: 123457, UID: 1000, Expires: 5 * time.Second},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sockets, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	got = nil
	if err := ParseProcNetSockets(strings.NewReader(procTCP6), "tcp", 8000, func(s Socket) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Local.String() != "[::]:8000" || !got[0].Listening() || got[1].Local.String() != "[::1]:8000" || got[1].Remote.String() != "[::1]:53248" {
		t.Fatalf("tcp6: %+v", got)
	}
	for _, bad := range []string{"h\n 0: 0100007F 00000000:0000 0A 0 0 0 0 0 0 1\n", "h\n 0: 0100007Z:1F40 00000000:0000 0A 0 0 0 0 0 0 1\n", "h\n 0: 0100007F:1F40 00000000:0000 ZZ 0 0 0 0 0 0 1\n"} {
		if err := ParseProcNetSockets(strings.NewReader(bad), "tcp", 0, func(Socket) {}); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func littleEndian() bool {
	return ProcNetAddr(netip.MustParseAddrPort("127.0.0.1:1")) == "0100007F:0001"
}

// Whatever the socket tables hold, the parser neither panics nor reports
// a socket on another port than the one asked for.
func FuzzParseProcNetSockets(f *testing.F) {
	f.Add(procTCP, uint16(8000))
	f.Add(procTCP6, uint16(8000))
	f.Add("h\n 0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 03:FFFFFFFF 0 x 0 y\n", uint16(0))
	f.Fuzz(func(t *testing.T, text string, port uint16) {
		_ = ParseProcNetSockets(strings.NewReader(text), "tcp", int(port), func(s Socket) {
			if port != 0 && s.Local.Port() != port {
				t.Fatalf("asked for port %d, got %v", port, s.Local)
			}
			if s.Expires < 0 {
				t.Fatalf("negative timer %v", s.Expires)
			}
		})
	})
}

func TestUnitOfCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/system.slice/nginx.service\n":                                         "nginx.service",
		"0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n": "foo.service",
		"0::/user.slice/user-1000.slice/session-3.scope\n":                         "session-3.scope",
		"12:pids:/x\n1:name=systemd:/system.slice/cron.service\n0::/\n":            "cron.service",
		"0::/system.slice/docker-0123.scope/init\n":                                "docker-0123.scope",
		"0::/\n":                             "",
		"garbage":                            "",
		"0::/kubepods/besteffort/pod1/abc\n": "",
	} {
		if got := UnitOfCgroup(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// A cgroup file of any content gives a unit name without a slash or a
// newline, or none.
func FuzzUnitOfCgroup(f *testing.F) {
	f.Add("0::/system.slice/nginx.service\n")
	f.Add("1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n0::/\n")
	f.Fuzz(func(t *testing.T, text string) {
		u := UnitOfCgroup(text)
		if strings.ContainsAny(u, "/\n") || (u != "" && !strings.HasSuffix(u, ".service") && !strings.HasSuffix(u, ".scope")) {
			t.Fatalf("%q: unit %q", text, u)
		}
	})
}
