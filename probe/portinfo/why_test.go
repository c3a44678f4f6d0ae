package portinfo

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry"
)

// The rules of Decide, one row each.
func TestDecide(t *testing.T) {
	listener := Socket{Proto: "tcp", State: "LISTEN", Local: "0.0.0.0:8000", Wildcard: true, Processes: []Process{{PID: 42, Command: "/usr/bin/python3 serve.py"}}}
	udp := Socket{Proto: "udp", State: "UNCONN", Local: "[::]:8000", Family: "ipv6", Wildcard: true}
	conn := Socket{Proto: "tcp", State: "ESTAB", Local: "10.0.0.5:8000", Remote: "10.0.0.9:443", Processes: []Process{{PID: 7, Command: "curl x"}}}
	tw := Socket{Proto: "tcp", State: "TIME-WAIT", Local: "127.0.0.1:8000", Remote: "127.0.0.1:5000", ExpiresSeconds: 41.5}
	for _, tc := range []struct {
		name    string
		w       Why
		free    bool
		reasons []string
	}{
		{"nothing", Why{Bindable: true}, true, nil},
		{"a TIME-WAIT does not keep a server off", Why{Bindable: true, Sockets: []Socket{tw}}, true, nil},
		{"another namespace's listener does not either", Why{Bindable: true, OtherNamespaces: []Socket{listener}}, true, nil},
		{"an allocation", Why{Bindable: true, Allocation: &registry.Allocation{ServiceName: "api", HealthStatus: "reserved"}}, false, []string{"gracectl allocated it to api (reserved)"}},
		{"a listener", Why{Sockets: []Socket{listener, tw}}, false, []string{"pid 42 (python3) listens on 0.0.0.0:8000 (TCP, every IPv4 address)"}},
		{"a UDP socket", Why{Bindable: true, Sockets: []Socket{udp}}, false, []string{Unseen() + " is bound to [::]:8000 (UDP, every IPv6 address, and IPv4 unless it is IPv6-only)"}},
		{"an outgoing connection", Why{Sockets: []Socket{conn}}, false, []string{"pid 7 (curl) has a TCP connection 10.0.0.5:8000 → 10.0.0.9:443 (ESTAB)"}},
		{"more connections", Why{Sockets: []Socket{conn, conn, conn, conn}, Omitted: 3}, false, []string{"pid 7 (curl) has a TCP connection 10.0.0.5:8000 → 10.0.0.9:443 (ESTAB)",
			"pid 7 (curl) has a TCP connection 10.0.0.5:8000 → 10.0.0.9:443 (ESTAB)", "pid 7 (curl) has a TCP connection 10.0.0.5:8000 → 10.0.0.9:443 (ESTAB)", "4 more connections use it"}},
		{"a server's connections are its listener's", Why{Sockets: []Socket{listener, conn}}, false, []string{"pid 42 (python3) listens on 0.0.0.0:8000 (TCP, every IPv4 address)"}},
		{"a TIME-WAIT whose socket did not set SO_REUSEADDR", Why{Sockets: []Socket{tw}}, false, []string{"a closed TCP connection 127.0.0.1:8000 → 127.0.0.1:5000 waits in TIME-WAIT for 42s more, and keeps a server off the port until then (its socket did not set SO_REUSEADDR)"}},
		{"cannot bind, nothing seen", Why{}, false, []string{"a TCP server cannot bind it on the IPv4 and IPv6 wildcard addresses, though no socket that holds it can be seen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			Decide(&tc.w)
			if tc.w.Free != tc.free || strings.Join(tc.w.Reasons, "|") != strings.Join(tc.reasons, "|") {
				t.Errorf("free %v, reasons %q; want %v, %q", tc.w.Free, tc.w.Reasons, tc.free, tc.reasons)
			}
		})
	}
	if s := tw.Sentence(); s != "a closed TCP connection 127.0.0.1:8000 → 127.0.0.1:5000 waits in TIME-WAIT for 42s more" {
		t.Errorf("TIME-WAIT: %q", s)
	}
}

// The rules of DecideFree, one row each.
func TestDecideFree(t *testing.T) {
	srv := Holder{PID: 100, Start: 5, Parent: 50, Command: "python3 serve.py", UID: 1000}
	worker := Holder{PID: 101, Start: 6, Parent: 100, Command: "python3 serve.py", UID: 1000}
	owned := &registry.Allocation{Port: 8000, ServiceName: "api", PID: registry.OwnerPID(os.Getpid())} // a live owner
	for _, tc := range []struct {
		name    string
		obs     FreeObservation
		stop    []int
		refused string
	}{
		{"nothing listens", FreeObservation{}, nil, ""},
		{"one listener", FreeObservation{Sockets: 1, Holders: []Holder{srv}}, []int{100}, ""},
		{"a pre-fork server: its parent only", FreeObservation{Sockets: 1, Holders: []Holder{srv, worker}}, []int{100}, ""},
		{"unseen", FreeObservation{Sockets: 2, Unseen: 1, Holders: []Holder{srv}}, nil, "port 0 is held by " + Unseen()},
		{"pid 1", FreeObservation{Sockets: 1, Holders: []Holder{{PID: 1, Start: 1, Command: "systemd"}}}, nil, "pid 1 (systemd), which gracectl never stops"},
		{"itself", FreeObservation{Sockets: 1, Self: 100, Holders: []Holder{srv}}, nil, "held by this gracectl (pid 100) itself"},
		{"a kernel thread", FreeObservation{Sockets: 1, Holders: []Holder{{PID: 9, Start: 1, Kernel: true, Command: "nfsd"}}}, nil, "kernel thread 9"},
		{"no start time", FreeObservation{Sockets: 1, Holders: []Holder{{PID: 7}}}, nil, "cannot be identified by its start time"},
		{"a live owner, not the caller", FreeObservation{Sockets: 1, Holders: []Holder{srv}, Allocation: owned}, nil, "use --force"},
		{"a live owner, with --force", FreeObservation{Sockets: 1, Holders: []Holder{srv}, Allocation: owned, Force: true}, []int{100}, ""},
		{"the caller's own", FreeObservation{Sockets: 1, Holders: []Holder{srv}, Allocation: owned, Callers: []int{os.Getpid()}}, []int{100}, ""},
		{"a dead owner", FreeObservation{Sockets: 1, Holders: []Holder{srv}, Allocation: &registry.Allocation{Port: 8000, PID: 1 << 22}}, []int{100}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := DecideFree(tc.obs)
			var got []int
			for _, h := range plan.Stop {
				got = append(got, h.PID)
			}
			switch {
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error()+" "+err.(*RefusedError).Hint, tc.refused)):
				t.Errorf("got %v, %v; want refused: %s", got, err, tc.refused)
			case tc.refused == "" && (err != nil || fmt.Sprint(got) != fmt.Sprint(tc.stop) || plan.Nothing != (tc.obs.Sockets == 0)):
				t.Errorf("got %v (nothing %v), %v; want %v", got, plan.Nothing, err, tc.stop)
			}
		})
	}
}

// Root is never told to run as root: what root cannot see is the kernel's
// or another PID namespace's.
func TestUnseenForRoot(t *testing.T) {
	if got := Unseen(); (os.Geteuid() == 0) == strings.Contains(got, "run as root") {
		t.Errorf("euid %d: %q", os.Geteuid(), got)
	}
}
