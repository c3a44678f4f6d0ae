package cmd_test

import (
	"strings"
	"testing"
	"time"
)

// wait returns as soon as the port listens, on IPv4 or on IPv6 loopback
// only, and prints it.
func TestWaitListensOnEitherLoopback(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	for i, spec := range []string{"tcp4,127.0.0.1,", "tcp6,::1,"} {
		port := b.P(i)
		w := startGracectl(t, root, "wait", port, "--timeout", "60s")
		startListener(t, nil, spec+port)
		if code := w.wait(t, 60*time.Second); code != 0 || strings.TrimSpace(w.out.String()) != port {
			t.Fatalf("%s: exit %d, output %q", spec, code, w.out)
		}
	}
}

// A service that wait finds unallocated, then allocated by run, then
// listening but answering 503 for two seconds: wait --healthy returns once
// the health path answers 200.
func TestWaitHealthyAfterDelay(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	out, err := gracectlCmd(t, root, "wait", "slowsvc", "--timeout", "200ms").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `service "slowsvc" did not listen within 200ms; last seen: service "slowsvc" holds no port yet`) {
		t.Fatalf("before it is allocated: %v: %s", err, out)
	}
	w := startGracectl(t, root, "wait", "slowsvc", "--healthy", "--timeout", "90s", "--json")
	start := time.Now()
	startGracectl(t, root, "run", "--quiet", "--service", "slowsvc", "--preferred", b.P(2), "--health-path", "/health", "--",
		"python3", "-c", pyListen, "health={port},2")
	if code := w.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, w.out)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("wait --healthy returned after %s, before the service answered 200 (2s)", took)
	}
	out = []byte(w.out.String())
	if !strings.Contains(string(out), `"ready": true`) || !strings.Contains(string(out), `"port": `+b.P(2)) || !strings.Contains(string(out), `"healthy": true`) ||
		!strings.Contains(string(out), `"health_path": "/health"`) {
		t.Errorf("output: %s", out)
	}
	if got := httpGet(t, "http://"+b.Addr(2)+"/health"); got != "" {
		t.Errorf("health answer %q", got)
	}
}

// On timeout wait exits 1 and says what it last saw: nothing listening,
// or a listener whose health path does not answer 2xx.
func TestWaitTimeout(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	out, err := gracectlCmd(t, root, "wait", b.P(3), "--timeout", "300ms").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "error: port "+b.P(3)+" did not listen within 300ms; last seen: nothing listens on port "+b.P(3)) {
		t.Errorf("%v: %s", err, out)
	}
	startListener(t, nil, "health="+b.P(4)+",3600")
	out, err = gracectlCmd(t, root, "wait", b.P(4), "--healthy", "--path", "/health", "--timeout", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "did not become healthy within 1s; last seen: port "+b.P(4)+" listens, but /health answers HTTP 503") {
		t.Errorf("%v: %s", err, out)
	}
	out, err = gracectlCmd(t, root, "wait", b.P(4), "--healthy", "--timeout", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "has no health path to ask") {
		t.Errorf("--healthy without a path: %v: %s", err, out)
	}
}

// wait --json has healthy only with --healthy (docs/json.md): absent for a
// port waited for to listen, false for one that does not answer yet.
func TestWaitJSONHealthyOnlyWithHealthy(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	startListener(t, nil, "tcp4,127.0.0.1,"+b.P(5))
	out, err := gracectlCmd(t, root, "wait", b.P(5), "--timeout", "60s", "--json").Output()
	if err != nil || !strings.Contains(string(out), `"ready": true`) || strings.Contains(string(out), `"healthy"`) {
		t.Errorf("without --healthy: %v\n%s", err, out)
	}
	out, err = gracectlCmd(t, root, "wait", b.P(6), "--healthy", "--path", "/health", "--timeout", "300ms", "--json").Output()
	if err == nil || !strings.Contains(string(out), `"ready": false`) || !strings.Contains(string(out), `"healthy": false`) {
		t.Errorf("with --healthy, nothing listening: %v\n%s", err, out)
	}
}
