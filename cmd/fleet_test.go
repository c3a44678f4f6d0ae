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

	"github.com/gracectl/gracectl/registry/testenv"
)

// The fleet against a real etcd: three members on loopback, three
// simulated hosts (three roots, three host-ids, each its own watch
// --fleet), on ports of the test's own (testenv). Skips without an etcd
// binary (Debian's etcd-server; .ci/run and make test-fleet install it).

type etcdCluster struct {
	t         *testing.T
	bin       string
	dir       string
	ports     testenv.Block // client i on 2i, peer i on 2i+1
	endpoints string        // for --fleet
	members   []*exec.Cmd
}

func startEtcd(t *testing.T, ports testenv.Block) *etcdCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd here (apt-get install etcd-server, or make test-fleet)")
	}
	c := &etcdCluster{t: t, bin: bin, dir: t.TempDir(), ports: ports, members: make([]*exec.Cmd, 3),
		endpoints: fmt.Sprintf("etcd://%s,%s,%s", ports.Addr(0), ports.Addr(2), ports.Addr(4))}
	for i := range c.members {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
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

func (c *etcdCluster) start(i int) error {
	cluster := fmt.Sprintf("e0=http://%s,e1=http://%s,e2=http://%s", c.ports.Addr(1), c.ports.Addr(3), c.ports.Addr(5))
	client, peer := c.ports.Port(2*i), c.ports.Port(2*i+1)
	m := exec.Command(c.bin, "--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(c.dir, fmt.Sprintf("e%d", i)),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "gracectl-test")
	m.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("ETCD_UNSUPPORTED_ARCH"))
	if err := m.Start(); err != nil {
		return err
	}
	c.members[i] = m
	return nil
}

func (c *etcdCluster) kill(i int) {
	c.members[i].Process.Signal(syscall.SIGKILL)
	c.members[i].Wait()
	c.members[i] = nil
}

func (c *etcdCluster) waitHealthy() {
	waitFor(c.t, "etcd to elect a leader", 30*time.Second, func() bool {
		return gracectlCmd(c.t, c.t.TempDir(), "status", "--fleet="+c.endpoints).Run() == nil
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
	etcd := startEtcd(t, ports)
	endpoints := etcd.endpoints
	view := func(t *testing.T) (fleetView, bool) { return readFleetView(t, endpoints) }
	type host struct {
		id, root, rg string
		w            *started
	}
	hosts := []*host{{id: "h1", rg: ports.Sub(10, 19)}, {id: "h2", rg: ports.Sub(20, 29)}, {id: "h3", rg: ports.Sub(30, 39)}}
	api := "http://" + ports.Addr(6)
	late := ports.P(21) // h2's second port
	for _, h := range hosts {
		h.root = t.TempDir()
		if err := gracectlCmd(t, h.root, "allocate", "--service", "svc-"+h.id, "--range", h.rg).Run(); err != nil {
			t.Fatal(err)
		}
		args := []string{"watch", "--interval", "1s", "--range", h.rg, "--fleet", endpoints, "--host-id", h.id}
		if h.id == "h2" {
			args = append(args, "--api", ports.Addr(6)) // serves /api/fleet/...
		}
		h.w = startGracectl(t, h.root, args...)
	}
	t.Run("three hosts in the view", func(t *testing.T) {
		waitFor(t, "three hosts in the fleet view", 60*time.Second, func() bool {
			v, ok := view(t)
			return ok && v.has("h1", "svc-h1") && v.has("h2", "svc-h2") && v.has("h3", "svc-h3")
		})
		out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+endpoints).Output()
		if err != nil || !strings.Contains(string(out), "HOST h2 (") || !strings.Contains(string(out), "Hosts: 3\n") {
			t.Fatalf("status --fleet (%v):\n%s", err, out)
		}
	})
	t.Run("a new allocation appears", func(t *testing.T) {
		if err := gracectlCmd(t, hosts[1].root, "allocate", "--service", "late", "--range", hosts[1].rg).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new allocation in the fleet", 60*time.Second, func() bool { v, ok := view(t); return ok && v.has("h2", "late") })
		if out, err := gracectlCmd(t, t.TempDir(), "port", "late", "--fleet="+endpoints).Output(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ":"+late) {
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
	t.Run("who and env across the fleet", func(t *testing.T) {
		if out, err := gracectlCmd(t, t.TempDir(), "who", "--fleet="+endpoints, hosts[1].id+":"+late).Output(); err != nil || !strings.Contains(string(out), "allocated to late") {
			t.Errorf("who --fleet: %v %q", err, out)
		}
		if out, err := gracectlCmd(t, t.TempDir(), "env", "--fleet="+endpoints, "late").Output(); err != nil || !strings.Contains(string(out), "LATE_PORT="+late) || !strings.Contains(string(out), "LATE_HOST=") {
			t.Errorf("env --fleet: %v %q", err, out)
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
		dup.cmd.Process.Signal(syscall.SIGTERM)
		dup.wait(t, 60*time.Second)
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
		etcd.kill(2)
		if err := gracectlCmd(t, hosts[0].root, "allocate", "--service", "quorum", "--range", hosts[0].rg).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "an allocation with one member down", 60*time.Second, func() bool { v, ok := view(t); return ok && v.has("h1", "quorum") })
	})
	t.Run("all of etcd down", func(t *testing.T) {
		etcd.kill(0)
		etcd.kill(1)
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
	})
	t.Run("etcd back", func(t *testing.T) {
		for i := range 3 {
			if etcd.members[i] == nil {
				if err := etcd.start(i); err != nil {
					t.Fatal(err)
				}
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
