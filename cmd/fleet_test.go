package cmd_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd/etcdtest"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The fleet against a real etcd: three members on loopback, three
// simulated hosts (three roots, three host-ids, each its own watch
// --fleet), on ports of the test's own (testenv). Skips without an etcd
// binary (Debian's etcd-server; .ci/run and make test-fleet install it).

type fleetView struct {
	Hosts []struct {
		Host struct {
			ID string `json:"host_id"`
		} `json:"host"`
		Allocations []struct {
			Port    int    `json:"port"`
			Service string `json:"service_name"`
		} `json:"allocations"`
	} `json:"hosts"`
}

func readFleetView(t *testing.T, endpoints string) (fleetView, bool) {
	var v fleetView
	out, err := gracectlCmd(t, t.TempDir(), "status", "--json", "--fleet="+endpoints, "--lock-timeout", "5s").Output()
	if err != nil || json.Unmarshal(out, &v) != nil {
		return v, false
	}
	return v, true
}

// has reports whether host id is in the view with a service.
func (v fleetView) has(id, service string) bool {
	for _, h := range v.Hosts {
		if h.Host.ID != id {
			continue
		}
		if service == "" {
			return true
		}
		for _, a := range h.Allocations {
			if a.Service == service {
				return true
			}
		}
	}
	return false
}

// TestFleetOnEtcd runs its nine scenarios in order, each a subtest, on one
// etcd cluster and three hosts: one failing does not hide the rest.
func TestFleetOnEtcd(t *testing.T) {
	ports := testenv.Ports(t, 40) // etcd 0-5, the API 6, hosts 10-19, 20-29, 30-39
	etcd := etcdtest.Start(t, ports, 3, nil)
	endpoints := etcd.Spec()
	view := func(t *testing.T) (fleetView, bool) { return readFleetView(t, endpoints) }
	type host struct {
		id, root, rg string
		w            *started
	}
	hosts := []*host{{id: "h1", rg: ports.Sub(10, 19)}, {id: "h2", rg: ports.Sub(20, 29)}, {id: "h3", rg: ports.Sub(30, 39)}}
	api := "http://" + ports.Addr(6)
	late := ports.P(21) // h2's second port
	hostname, _ := os.Hostname()
	for _, h := range hosts {
		h.root = t.TempDir()
		if err := gracectlCmd(t, h.root, "allocate", "--service", "svc-"+h.id, "--range", h.rg).Run(); err != nil {
			t.Fatal(err)
		}
		args := []string{"watch", "--interval", "1s", "--range", h.rg, "--fleet", endpoints, "--host-id", h.id}
		if h.id == "h2" {
			args = append(args, "--api", ports.Addr(6), "--fleet-timeout", "2s") // serves /api/fleet/...
		}
		h.w = startGracectl(t, h.root, args...)
	}
	t.Run("three hosts in the view", func(t *testing.T) {
		waitFor(t, "three hosts in the fleet view", 60*time.Second, func() bool {
			v, ok := view(t)
			return ok && v.has("h1", "svc-h1") && v.has("h2", "svc-h2") && v.has("h3", "svc-h3")
		})
		out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+endpoints).Output()
		if err != nil || !strings.Contains(string(out), "HOST h2 ("+hostname+")\n") || !strings.Contains(string(out), "Hosts: 3\n") {
			t.Fatalf("status --fleet (%v):\n%s", err, out)
		}
		// Each host's WATCHDOG section is what its watchdog counted, once
		// it has had a cycle: never zeros it does not have.
		waitFor(t, "every host's watchdog counts in the report", 60*time.Second, func() bool {
			out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+endpoints).Output()
			return err == nil && strings.Count(string(out), "Check Interval: 1s\n") == 3 &&
				strings.Count(string(out), "Checks Performed: ") == 3 && !strings.Contains(string(out), "Checks Performed: 0\n") &&
				strings.Count(string(out), "Monitored Ports: 1\n") == 3 && strings.Count(string(out), "Last Cycle: ") == 3
		})
	})
	t.Run("a new allocation appears", func(t *testing.T) {
		if err := gracectlCmd(t, hosts[1].root, "allocate", "--service", "late", "--range", hosts[1].rg).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new allocation in the fleet", 60*time.Second, func() bool { v, ok := view(t); return ok && v.has("h2", "late") })
		if out, err := gracectlCmd(t, t.TempDir(), "port", "late", "--fleet="+endpoints).Output(); err != nil || string(out) != "h2:"+late+"\n" {
			t.Errorf("port --fleet: %v %q", err, out)
		}
	})
	t.Run("the API of a watchdog with --fleet", func(t *testing.T) {
		for path, want := range map[string]string{"/api/fleet/status": `"host_id": "h3"`, "/api/fleet/services/late": `"port": ` + late} {
			resp, err := http.Get(api + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %d\n%s", path, resp.StatusCode, body)
			}
		}
	})
	// The three simulated hosts share this machine's host name: the fleet
	// tells them apart by host id.
	t.Run("who and env across the fleet", func(t *testing.T) {
		addr, err := gracectlCmd(t, t.TempDir(), "port", "late", "--fleet="+endpoints).Output()
		if err != nil {
			t.Fatal(err)
		}
		if out, err := gracectlCmd(t, t.TempDir(), "who", "--fleet="+endpoints, strings.TrimSpace(string(addr))).Output(); err != nil || !strings.HasPrefix(string(out), "h2 ("+hostname+"):"+late+": allocated to late") {
			t.Errorf("who --fleet with what port --fleet printed: %v %q", err, out)
		}
		out, err := gracectlCmd(t, t.TempDir(), "who", "--fleet="+endpoints, hostname+":"+late).CombinedOutput()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), "3 hosts of the fleet are named "+strconv.Quote(hostname)+": h1, h2, h3") {
			t.Errorf("who --fleet by a host name three hosts share: exit %d\n%s", code, out)
		}
		if out, err := gracectlCmd(t, t.TempDir(), "env", "--fleet="+endpoints, "late").Output(); err != nil ||
			string(out) != "LATE_HOST="+hostname+"\nLATE_HOST_ID=h2\nLATE_PORT="+late+"\n" {
			t.Errorf("env --fleet: %v %q", err, out)
		}
		// A service on two hosts: refused, naming them, unless --host says
		// which.
		for _, h := range []*host{hosts[0], hosts[2]} {
			if err := gracectlCmd(t, h.root, "allocate", "--service", "shared", "--range", h.rg).Run(); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the shared service on h1 and h3", 60*time.Second, func() bool { v, ok := view(t); return ok && v.has("h1", "shared") && v.has("h3", "shared") })
		out, err = gracectlCmd(t, t.TempDir(), "env", "--fleet="+endpoints, "shared").CombinedOutput()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), `"shared" on h1, h3; pick one with --host`) {
			t.Errorf("env --fleet for a service on two hosts: exit %d\n%s", code, out)
		}
		if out, err := gracectlCmd(t, t.TempDir(), "env", "--fleet="+endpoints, "--host", "h3", "shared").Output(); err != nil || !strings.Contains(string(out), "SHARED_HOST_ID=h3\n") {
			t.Errorf("env --fleet --host h3: %v %q", err, out)
		}
	})
	// A second watchdog claiming h1: an error in both logs, and it does not
	// publish.
	t.Run("a second claimant of a host-id", func(t *testing.T) {
		dup := startGracectl(t, t.TempDir(), "watch", "--interval", "1s", "--range", hosts[0].rg, "--fleet", endpoints, "--host-id", "h1")
		waitFor(t, "the second claimant's error", 60*time.Second, func() bool {
			return strings.Contains(dup.out.String(), "host-id h1 is already claimed by")
		})
		waitFor(t, "the first claimant to hear of it", 60*time.Second, func() bool {
			return strings.Contains(hosts[0].w.out.String(), "also claims host-id h1")
		})
		// The second claimant tries again (after 1, 2, 4 s): one episode,
		// one line in each log, however many tries it takes.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if n := strings.Count(hosts[0].w.out.String(), "also claims host-id h1"); n != 1 {
				t.Fatalf("the first claimant logged the conflict %d times:\n%s", n, hosts[0].w.out)
			}
		}
		if n := strings.Count(dup.out.String(), "host-id h1 is already claimed by"); n != 1 {
			t.Errorf("the second claimant logged its refusal %d times:\n%s", n, dup.out)
		}
		dup.cmd.Process.Signal(syscall.SIGTERM)
		dup.wait(t, 60*time.Second)
		waitFor(t, "the first claimant to hear the episode ended", 60*time.Second, func() bool {
			return strings.Contains(hosts[0].w.out.String(), "no longer claims host-id h1")
		})
		if v, _ := view(t); !v.has("h1", "svc-h1") {
			t.Errorf("h1 lost its view to the second claimant")
		}
	})
	// SIGKILL of a host's watchdog: the host stays until its lease runs out,
	// then leaves.
	t.Run("a killed watchdog's host leaves with its lease", func(t *testing.T) {
		killed := time.Now()
		hosts[2].w.cmd.Process.Signal(syscall.SIGKILL)
		waitFor(t, "the killed host to leave the fleet", 120*time.Second, func() bool { v, ok := view(t); return ok && !v.has("h3", "") })
		// The lease runs 15 s from its last renewal, and renewals come every
		// third of that: the host leaves 10 to 15 s after the kill, not
		// sooner (a lower bound only: a slow machine makes it later).
		if gone := time.Since(killed); gone < 9*time.Second {
			t.Errorf("the killed host left after %s, before its 15 s lease (renewed every 5 s) could have run out", gone)
		}
	})
	t.Run("one etcd member down", func(t *testing.T) {
		etcd.Kill(2)
		if err := gracectlCmd(t, hosts[0].root, "allocate", "--service", "quorum", "--range", hosts[0].rg).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "an allocation with one member down", 60*time.Second, func() bool { v, ok := view(t); return ok && v.has("h1", "quorum") })
	})
	t.Run("all of etcd down", func(t *testing.T) {
		etcd.Kill(0)
		etcd.Kill(1)
		if err := gracectlCmd(t, hosts[0].root, "allocate", "--service", "offline", "--range", hosts[0].rg).Run(); err != nil {
			t.Fatalf("allocate with etcd down: %v", err)
		}
		if err := gracectlCmd(t, hosts[1].root, "release", "--service", "late", "--force").Run(); err != nil {
			t.Fatalf("release with etcd down: %v", err)
		}
		for _, h := range hosts[:2] {
			waitFor(t, "host "+h.id+" to find etcd gone", 60*time.Second, func() bool {
				return strings.Contains(h.w.out.String(), "Fleet: cannot publish to etcd")
			})
		}
		// Every read says so within its deadline, naming the endpoints.
		for _, args := range [][]string{{"status"}, {"port", "late"}, {"who", "h2:" + late}, {"env"}} {
			checkUnreadable(t, 2*time.Second, etcd.Endpoints(), append(args, "--fleet="+endpoints, "--fleet-timeout", "2s")...)
		}
		checkAPIUnavailable(t, api+"/api/fleet/status", 2*time.Second, etcd.Endpoints())
	})
	t.Run("etcd back", func(t *testing.T) {
		for i := range 3 {
			if !etcd.Running(i) {
				etcd.StartMember(i)
			}
		}
		waitFor(t, "the fleet whole again after etcd's return", 120*time.Second, func() bool {
			v, ok := view(t)
			return ok && v.has("h1", "offline") && v.has("h2", "svc-h2") && !v.has("h2", "late")
		})
		for _, h := range hosts[:2] {
			waitFor(t, "host "+h.id+" to say etcd is back", 60*time.Second, func() bool {
				return strings.Contains(h.w.out.String(), "Fleet: etcd is back")
			})
		}
	})
}
