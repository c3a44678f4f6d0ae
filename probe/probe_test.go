package probe

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry/testenv"
)

// Ports: each test takes its own from testenv.Ports.

func TestParseStatStart(t *testing.T) {
	// A command name with spaces and parentheses: fields are counted from
	// after the last ')'.
	line := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n"
	got, err := ParseStatStart([]byte(line))
	if err != nil || got != 987654 {
		t.Fatalf("got %d, %v", got, err)
	}
	st, err := ParseStat([]byte(line))
	if err != nil || st != (Stat{Comm: "my (odd) name", State: 'S', PPID: 1, Flags: 4194560, Start: 987654}) {
		t.Fatalf("ParseStat: %+v, %v", st, err)
	}
	if _, err := ParseStatStart([]byte("4242 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20")); err != ErrNoProcess {
		t.Fatalf("zombie: %v", err)
	}
	for _, bad := range []string{"", "4242 (x", "4242 (x) S 1 2"} {
		if _, err := ParseStatStart([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// The process table holds every process of one pass over /proc, with
// start times where the platform gives them, and resolves owners as
// Resolve does.
func TestProcessTable(t *testing.T) {
	c := testenv.Command(t, "sleep", "600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	id, err := Identify(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tab := TakeProcessTable()
	if got := tab.Name(id.PID); got != "sleep" {
		t.Errorf("name %q, want sleep", got)
	}
	if !tab.IsDescendant(id.PID, os.Getpid()) {
		t.Errorf("sleep is not our child in the table")
	}
	if local, l := tab.Resolve(id); l != Running || local != id.PID {
		t.Errorf("Resolve(running) = %d, %v", local, l)
	}
	reused := id
	reused.Start++
	if _, l := tab.Resolve(reused); l != Dead {
		t.Errorf("a PID with another start time resolved as %v", l)
	}
	// A process that exits after the snapshot is still seen running by
	// it, as by a cycle that read it then; one that is reaped is dead to
	// the next snapshot.
	c.Process.Kill()
	c.Wait()
	if _, l := tab.Resolve(id); l != Running {
		t.Errorf("the snapshot forgot a process it saw: %v", l)
	}
	if _, l := TakeProcessTable().Resolve(id); l != Dead {
		t.Errorf("a reaped process resolved as %v", l)
	}
}

func TestIdentifyAndAlive(t *testing.T) {
	c := testenv.Command(t, "sleep", "600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := Identify(c.Process.Pid)
	if err != nil || id.Start == 0 {
		t.Fatalf("identify: %+v %v", id, err)
	}
	if !Alive(id) {
		t.Fatal("live child not alive")
	}
	reused := id
	reused.Start++
	if Alive(reused) {
		t.Fatal("a different start time was taken for the same process")
	}
	c.Process.Kill()
	c.Wait()
	if Alive(id) {
		t.Fatal("killed child still alive")
	}
	if _, err := Identify(c.Process.Pid); err == nil {
		t.Fatal("identified a dead pid")
	}
}

func TestBindableAndListeners(t *testing.T) {
	ports := testenv.Ports(t, 2)
	if err := Bindable(ports.Port(0)); err != nil {
		t.Fatalf("free port: %v", err)
	}
	l, err := net.Listen("tcp", ports.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Bindable(ports.Port(0)); err == nil {
		t.Fatal("a port served on 127.0.0.1 counted as free")
	}
	snap := TakeSnapshot()
	if !snap.Listening(context.Background(), ports.Port(0)) || snap.Listening(context.Background(), ports.Port(1)) {
		t.Fatal("listening snapshot wrong")
	}
	if ProcNetAvailable() {
		owners := snap.Owners(ports.Port(0))
		if len(owners) != 1 || owners[0] != os.Getpid() {
			t.Fatalf("owners of %d = %v, want [%d]", ports.Port(0), owners, os.Getpid())
		}
	}
}

func TestParseHealthCounts(t *testing.T) {
	cases := map[string][2]int64{
		`{"status":"ok","request_count":1247,"error_count":3}`: {1247, 3},
		`{"request_count":12.0}`:                               {12, -1},
		`{"request_count":"12","error_count":-1}`:              {-1, -1},
		`not json`: {-1, -1},
		`[1,2]`:    {-1, -1},
	}
	for in, want := range cases {
		r, e := ParseHealthCounts([]byte(in))
		got := [2]int64{-1, -1}
		if r != nil {
			got[0] = *r
		}
		if e != nil {
			got[1] = *e
		}
		if got != want {
			t.Errorf("%s: got %v, want %v", in, got, want)
		}
	}
}

func FuzzParseHealthCounts(f *testing.F) {
	f.Add([]byte(`{"status":"ok","request_count":1247,"error_count":3}`))
	f.Add([]byte(`{"request_count":1e30}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := ParseHealthCounts(body)
		if (r != nil && *r < 0) || (e != nil && *e < 0) {
			t.Fatalf("negative count from %q", body)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1000 100 1"))
	f.Add([]byte("7 ((a) b)) Z 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStat(data)
		start, serr := ParseStatStart(data)
		if (err == nil) != (serr == nil || serr == ErrNoProcess) || (err == nil && !st.Zombie && start != st.Start) {
			t.Fatalf("ParseStat %+v %v, ParseStatStart %d %v", st, err, start, serr)
		}
	})
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n")
	f.Fuzz(func(t *testing.T, data string) {
		_ = ParseProcNetTCP(strings.NewReader(data), func(port int, inode uint64) {
			if port < 0 || port > 65535 {
				t.Fatalf("port %d", port)
			}
		})
	})
}

func FuzzParseProcNetTCPSocket(f *testing.F) {
	f.Add("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:6EF0 0100007F:A2C4 01 00000000:00000064 00:00000000 00000000     0        0 1234 1 0000000000000000 20 4 30 10 -1\n")
	f.Fuzz(func(t *testing.T, data string) {
		ParseProcNetTCPSocket(strings.NewReader(data), "0100007F:6EF0", "0100007F:A2C4")
	})
}
