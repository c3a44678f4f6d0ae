package cmd_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/cmd/fleet/etcd/etcdtest"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The fleet when etcd does not answer: every read has a deadline, says
// which endpoints it tried, and the API answers 503 within it; a host
// whose etcd hangs goes on allocating.

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// startupTime is how long a gracectl that does nothing takes here, now:
// what a command's time beyond its deadline is measured against.
func startupTime(t *testing.T) time.Duration {
	var worst time.Duration
	for range 2 {
		start := time.Now()
		if err := gracectlCmd(t, t.TempDir(), "--version").Run(); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	return worst
}

// checkUnreadable runs a reader of the fleet that cannot read it: it must
// exit 7 within its deadline and 1 s (its own start-up not counted), with
// one error line that names every endpoint.
func checkUnreadable(t *testing.T, deadline time.Duration, endpoints []string, args ...string) {
	t.Helper()
	startup := startupTime(t)
	start := time.Now()
	out, err := gracectlCmd(t, t.TempDir(), args...).CombinedOutput()
	took := time.Since(start)
	if code := exitCode(err); code != 7 {
		t.Errorf("%v: exit %d, want 7:\n%s", args, code, out)
	}
	if took > deadline+time.Second+startup {
		t.Errorf("%v took %s: more than its deadline %s and 1 s (start-up here: %s)", args, took, deadline, startup)
	}
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "gracectl: error: ") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Fatalf("%v: want one error line:\n%s", args, out)
	}
	for _, ep := range endpoints {
		if !strings.Contains(errs[0], ep) {
			t.Errorf("%v: the error does not name %s:\n%s", args, ep, out)
		}
	}
}

// checkAPIUnavailable asks a watchdog's API for the fleet it cannot read:
// a 503 with a JSON error naming every endpoint, within the deadline and 1 s.
func checkAPIUnavailable(t *testing.T, url string, deadline time.Duration, endpoints []string) {
	t.Helper()
	start := time.Now()
	resp, err := (&http.Client{Timeout: testenv.Scale(60 * time.Second)}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, body)
	}
	for _, ep := range endpoints {
		if !strings.Contains(e.Error, ep) {
			t.Errorf("GET %s: the error does not name %s: %s", url, ep, e.Error)
		}
	}
	if took > deadline+time.Second {
		t.Errorf("GET %s took %s: more than its deadline %s and 1 s", url, took, deadline)
	}
}

// Members that accept connections and never answer: each read ends at its
// deadline (exit 7, naming them), the API answers 503 within it, and the
// host whose watchdog publishes to them allocates and releases as ever.
func TestFleetReadDeadline(t *testing.T) {
	ports := testenv.Ports(t, 20) // hung members 0-2, the API 3, the host's range 10-19
	var eps []string
	for i := range 3 {
		etcdtest.Hang(t, ports.Addr(i))
		eps = append(eps, ports.Addr(i))
	}
	spec := "etcd://" + strings.Join(eps, ",")
	root, rg := t.TempDir(), ports.Sub(10, 19)
	w := startGracectl(t, root, "watch", "--interval", "1s", "--range", rg, "--fleet", spec, "--host-id", "hung",
		"--api", ports.Addr(3), "--fleet-timeout", "3s")
	waitFor(t, "the watchdog's API", 60*time.Second, func() bool { return probeListening(ports.Port(3)) })
	for _, args := range [][]string{{"status"}, {"port", "svc"}, {"who", "hung:" + ports.P(10)}, {"env", "svc"}} {
		checkUnreadable(t, 3*time.Second, eps, append(args, "--fleet="+spec, "--fleet-timeout", "3s")...)
	}
	// The deadline from the environment, where no flag says otherwise.
	c := gracectlCmd(t, t.TempDir(), "status", "--fleet="+spec)
	c.Env = append(c.Env, "GRACECTL_FLEET_TIMEOUT=1s")
	if out, err := c.CombinedOutput(); exitCode(err) != 7 || !strings.Contains(string(out), "within 1s") {
		t.Errorf("GRACECTL_FLEET_TIMEOUT=1s: %v\n%s", err, out)
	}
	checkAPIUnavailable(t, "http://"+ports.Addr(3)+"/api/fleet/services/svc", 3*time.Second, eps)
	// Publishing waits on etcd; the registry does not.
	for range 3 {
		if out, err := gracectlCmd(t, root, "allocate", "--service", "svc", "--range", rg, "--lock-timeout", "10s").CombinedOutput(); err != nil {
			t.Fatalf("allocate while the publisher hangs: %v\n%s", err, out)
		}
		if out, err := gracectlCmd(t, root, "release", "--service", "svc", "--range", rg, "--lock-timeout", "10s").CombinedOutput(); err != nil {
			t.Fatalf("release while the publisher hangs: %v\n%s", err, out)
		}
	}
	waitFor(t, "the watchdog to say it cannot publish", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Fleet: cannot publish to etcd")
	})
}

// A host id that could forge another host's keys is refused by watch, and a
// key that does not parse as the layout says is ignored by every reader,
// with a warning naming it (escaped), never read as another host's.
func TestFleetForgedKeys(t *testing.T) {
	ports := testenv.Ports(t, 10) // etcd 0-1, the range 2-9
	etcd := etcdtest.Start(t, ports, 1, nil)
	for _, id := range []string{"evil/ports/1", "a b", "tab\there", ".hidden", strings.Repeat("x", 65)} {
		out, err := gracectlCmd(t, t.TempDir(), "watch", "--range", ports.Sub(2, 9), "--fleet", etcd.Spec(), "--host-id", id).CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "host id") {
			t.Errorf("--host-id %q: exit %d\n%s", id, code, out)
		}
	}
	cli := etcd.Client()
	defer cli.Close()
	ctx := t.Context()
	host := func(id string) string {
		return `{"host_id":"` + id + `","hostname":"x","port_range":{"start":` + ports.P(2) + `,"end":` + ports.P(9) + `},"watchdog_pid":1,"version":"v","published":"2026-01-01T00:00:00Z"}`
	}
	alloc := `{"port":` + ports.P(2) + `,"service_name":"forged","started_by":"x","purpose":"","pid":null,"allocated_at":"2026-01-01T00:00:00Z","last_health_check":null,"health_status":"reserved","request_count":0,"error_count":0}`
	for key, value := range map[string]string{
		"/gracectl/v1/hosts/evil/ports/1":               host("evil/ports/1"), // what a host id "evil/ports/1" published
		"/gracectl/v1/hosts/bare":                       host("bare"),         // a good record, no watchdog counts
		"/gracectl/v1/hosts/h9":                         host("h1"),           // a record under another host's key
		"/gracectl/v1/hosts/bare/ports/0" + ports.P(2):  alloc,                // not a port as the layout writes it
		"/gracectl/v1/hosts/bare/ports/" + ports.P(3):   alloc,                // the allocation of another port
		"/gracectl/v1/hosts/bare/ports/" + ports.P(2):   alloc,                // good
		"/gracectl/v1/hosts/bare/x/ports/" + ports.P(2): alloc,
		"/gracectl/v1/hosts/esc\x1b[31m":                host("esc\x1b[31m"),
	} {
		if err := cli.Put(ctx, key, value, 0); err != nil {
			t.Fatal(err)
		}
	}
	out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+etcd.Spec()).CombinedOutput()
	if err != nil {
		t.Fatalf("status --fleet: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "gracectl: warning: ignoring fleet key"); n != 6 || strings.Contains(string(out), "\x1b") {
		t.Errorf("want 6 warnings, escaped:\n%s", out)
	}
	if !strings.Contains(string(out), "HOST bare (x)\n") || strings.Contains(string(out), "HOST evil") || strings.Contains(string(out), "HOST h1") ||
		strings.Count(string(out), "Port "+ports.P(2)+": forged") != 1 || !strings.Contains(string(out), "Hosts: 1\n") {
		t.Errorf("the view of the forged keys:\n%s", out)
	}
	// The bare record has no watchdog counts: the report leaves them out.
	if strings.Contains(string(out), "Check Interval") || strings.Contains(string(out), "Checks Performed") || !strings.Contains(string(out), "Running: True\n") {
		t.Errorf("the WATCHDOG section of a record without counts:\n%s", out)
	}
	if out, err := gracectlCmd(t, t.TempDir(), "port", "forged", "--fleet="+etcd.Spec()).Output(); err != nil || string(out) != "bare:"+ports.P(2)+"\n" {
		t.Errorf("port --fleet of the forged service: %v %q", err, out)
	}
}

// After every member of etcd stopped and came back, each host publishes
// again without waiting for its next cycle (an hour away here): what its
// registry changed meanwhile is in the view. The time from etcd answering
// again to each host's republish is logged (docs/fleet.md has the numbers).
func TestFleetRepublishAfterEtcdRestart(t *testing.T) {
	ports := testenv.Ports(t, 30) // etcd 0-5, hosts 10-19 and 20-29
	etcd := etcdtest.Start(t, ports, 3, nil)
	type host struct {
		id, root, rg string
		w            *started
	}
	hosts := []*host{{id: "r1", rg: ports.Sub(10, 19)}, {id: "r2", rg: ports.Sub(20, 29)}}
	for _, h := range hosts {
		h.root = t.TempDir()
		h.w = startGracectl(t, h.root, "watch", "--interval", "1h", "--range", h.rg, "--fleet", etcd.Spec(), "--host-id", h.id)
	}
	waitFor(t, "both hosts in the view", 60*time.Second, func() bool {
		v, ok := readFleetView(t, etcd.Spec())
		return ok && v.has("r1", "") && v.has("r2", "")
	})
	for i := range 3 {
		etcd.Kill(i)
	}
	for _, h := range hosts {
		if err := gracectlCmd(t, h.root, "allocate", "--service", "offline-"+h.id, "--range", h.rg).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, h.id+" to find etcd gone", 60*time.Second, func() bool {
			return strings.Contains(h.w.out.String(), "Fleet: cannot publish to etcd")
		})
	}
	for i := range 3 {
		etcd.StartMember(i)
	}
	etcd.WaitHealthy()
	back := time.Now()
	cli := etcd.Client()
	defer cli.Close()
	seen := map[string]time.Duration{}
	waitFor(t, "both hosts to publish again", 60*time.Second, func() bool {
		v, err := fleet.ReadWithin(t.Context(), cli, 2*time.Second)
		for _, h := range hosts {
			if _, done := seen[h.id]; !done && err == nil && len(v.Services("offline-"+h.id, "")) == 1 {
				seen[h.id] = time.Since(back)
			}
		}
		return len(seen) == len(hosts)
	})
	t.Logf("republished after etcd answered again: r1 %s, r2 %s", seen["r1"].Round(time.Millisecond), seen["r2"].Round(time.Millisecond))
	// The log line follows the publish; wait for it rather than read it at once.
	for _, h := range hosts {
		waitFor(t, h.id+" to say etcd is back", 60*time.Second, func() bool {
			return strings.Contains(h.w.out.String(), "Fleet: etcd is back")
		})
	}
}
