package cmd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fleet against a real etcd: three members on loopback, three
// simulated hosts (three roots, three host-ids, each its own watch
// --fleet). Ports 26100-26139. Skips without an etcd binary (Debian's
// etcd-server; .ci/run and make test-fleet install it).

type etcdCluster struct {
	t       *testing.T
	bin     string
	dir     string
	members []*exec.Cmd
}

const etcdEndpoints = "etcd://127.0.0.1:26101,127.0.0.1:26103,127.0.0.1:26105"

func startEtcd(t *testing.T) *etcdCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd here (apt-get install etcd-server, or make test-fleet)")
	}
	c := &etcdCluster{t: t, bin: bin, dir: t.TempDir(), members: make([]*exec.Cmd, 3)}
	for i := range c.members {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m != nil {
				m.Process.Kill()
				m.Wait()
			}
		}
	})
	c.waitHealthy()
	return c
}

func (c *etcdCluster) start(i int) {
	cluster := "e0=http://127.0.0.1:26102,e1=http://127.0.0.1:26104,e2=http://127.0.0.1:26106"
	client, peer := 26101+2*i, 26102+2*i
	m := exec.Command(c.bin, "--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(c.dir, fmt.Sprintf("e%d", i)),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "gracectl-test")
	m.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("ETCD_UNSUPPORTED_ARCH"))
	if err := m.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.members[i] = m
}

func (c *etcdCluster) kill(i int) {
	c.members[i].Process.Signal(syscall.SIGKILL)
	c.members[i].Wait()
	c.members[i] = nil
}

func (c *etcdCluster) waitHealthy() {
	waitFor(c.t, "etcd to elect a leader", 30*time.Second, func() bool {
		return gracectlCmd(c.t, c.t.TempDir(), "status", "--fleet="+etcdEndpoints).Run() == nil
	})
}

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

func readFleetView(t *testing.T) (fleetView, bool) {
	var v fleetView
	out, err := gracectlCmd(t, t.TempDir(), "status", "--json", "--fleet="+etcdEndpoints, "--lock-timeout", "5s").Output()
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

func TestFleetOnEtcd(t *testing.T) {
	etcd := startEtcd(t)
	type host struct {
		id, root, rg string
		w            *started
	}
	hosts := []*host{{id: "h1", rg: "26110-26119"}, {id: "h2", rg: "26120-26129"}, {id: "h3", rg: "26130-26139"}}
	for _, h := range hosts {
		h.root = t.TempDir()
		if err := gracectlCmd(t, h.root, "allocate", "--service", "svc-"+h.id, "--range", h.rg).Run(); err != nil {
			t.Fatal(err)
		}
		args := []string{"watch", "--interval", "1s", "--range", h.rg, "--fleet", etcdEndpoints, "--host-id", h.id}
		if h.id == "h2" {
			args = append(args, "--api", "127.0.0.1:26140") // serves /api/fleet/...
		}
		h.w = startGracectl(t, h.root, args...)
	}
	// All three hosts, with their allocations.
	waitFor(t, "three hosts in the fleet view", 20*time.Second, func() bool {
		v, ok := readFleetView(t)
		return ok && v.has("h1", "svc-h1") && v.has("h2", "svc-h2") && v.has("h3", "svc-h3")
	})
	out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+etcdEndpoints).Output()
	if err != nil || !strings.Contains(string(out), "HOST h2 (") || !strings.Contains(string(out), "Hosts: 3\n") {
		t.Fatalf("status --fleet (%v):\n%s", err, out)
	}
	// An allocation on one host appears in the fleet view.
	if err := gracectlCmd(t, hosts[1].root, "allocate", "--service", "late", "--range", hosts[1].rg).Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new allocation in the fleet", 10*time.Second, func() bool { v, ok := readFleetView(t); return ok && v.has("h2", "late") })
	if out, err := gracectlCmd(t, t.TempDir(), "port", "late", "--fleet="+etcdEndpoints).Output(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ":26121") {
		t.Errorf("port --fleet: %v %q", err, out)
	}
	// The API of a watchdog with --fleet.
	for path, want := range map[string]string{"/api/fleet/status": `"host_id": "h3"`, "/api/fleet/services/late": `"port": 26121`} {
		resp, err := http.Get("http://127.0.0.1:26140" + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d\n%s", path, resp.StatusCode, body)
		}
	}
	// who and env across the fleet.
	if out, err := gracectlCmd(t, t.TempDir(), "who", "--fleet="+etcdEndpoints, hosts[1].id+":26121").Output(); err != nil || !strings.Contains(string(out), "allocated to late") {
		t.Errorf("who --fleet: %v %q", err, out)
	}
	if out, err := gracectlCmd(t, t.TempDir(), "env", "--fleet="+etcdEndpoints, "late").Output(); err != nil || !strings.Contains(string(out), "LATE_PORT=26121") || !strings.Contains(string(out), "LATE_HOST=") {
		t.Errorf("env --fleet: %v %q", err, out)
	}
	// A second watchdog claiming h1: an error in both logs, and it does not
	// publish.
	dup := startGracectl(t, t.TempDir(), "watch", "--interval", "1s", "--range", "26110-26119", "--fleet", etcdEndpoints, "--host-id", "h1")
	waitFor(t, "the second claimant's error", 15*time.Second, func() bool {
		return strings.Contains(dup.out.String(), "host-id h1 is already claimed by")
	})
	waitFor(t, "the first claimant to hear of it", 15*time.Second, func() bool {
		return strings.Contains(hosts[0].w.out.String(), "also claims host-id h1")
	})
	dup.cmd.Process.Signal(syscall.SIGTERM)
	dup.wait(t, 10*time.Second)
	if v, _ := readFleetView(t); !v.has("h1", "svc-h1") {
		t.Errorf("h1 lost its view to the second claimant")
	}
	// SIGKILL of a host's watchdog: the host stays until its lease runs out,
	// then leaves.
	killed := time.Now()
	hosts[2].w.cmd.Process.Signal(syscall.SIGKILL)
	waitFor(t, "the killed host to leave the fleet", 40*time.Second, func() bool { v, ok := readFleetView(t); return ok && !v.has("h3", "") })
	// The lease runs 15 s from its last renewal, and renewals come every
	// third of that: the host leaves 10 to 15 s after the kill, not sooner.
	if gone := time.Since(killed); gone < 9*time.Second {
		t.Errorf("the killed host left after %s, before its 15 s lease (renewed every 5 s) could have run out", gone)
	}
	// One etcd member down: nothing changes (quorum).
	etcd.kill(2)
	if err := gracectlCmd(t, hosts[0].root, "allocate", "--service", "quorum", "--range", hosts[0].rg).Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an allocation with one member down", 15*time.Second, func() bool { v, ok := readFleetView(t); return ok && v.has("h1", "quorum") })
	// All of etcd down: every host goes on allocating and releasing.
	etcd.kill(0)
	etcd.kill(1)
	if err := gracectlCmd(t, hosts[0].root, "allocate", "--service", "offline", "--range", hosts[0].rg).Run(); err != nil {
		t.Fatalf("allocate with etcd down: %v", err)
	}
	if err := gracectlCmd(t, hosts[1].root, "release", "--service", "late", "--force").Run(); err != nil {
		t.Fatalf("release with etcd down: %v", err)
	}
	for _, h := range hosts[:2] {
		waitFor(t, "host "+h.id+" to find etcd gone", 30*time.Second, func() bool {
			return strings.Contains(h.w.out.String(), "Fleet: cannot publish to etcd")
		})
	}
	// etcd back: the fleet view is whole again.
	for i := range 3 {
		etcd.start(i)
	}
	waitFor(t, "the fleet whole again after etcd's return", 60*time.Second, func() bool {
		v, ok := readFleetView(t)
		return ok && v.has("h1", "offline") && v.has("h2", "svc-h2") && !v.has("h2", "late")
	})
	for _, h := range hosts[:2] {
		waitFor(t, "host "+h.id+" to say etcd is back", 30*time.Second, func() bool {
			return strings.Contains(h.w.out.String(), "Fleet: etcd is back")
		})
	}
}
