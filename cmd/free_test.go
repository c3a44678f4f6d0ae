package cmd_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe/container/containertest"
)

// pyConnect connects to 127.0.0.1:PORT, prints "ready" and sleeps: a
// client of the port, which kill-port-style tools kill too.
const pyConnect = `
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    time.sleep(1)
`

// freeLog returns the audit log's free lines.
func freeLines(t *testing.T, root string) []string {
	var out []string
	for _, ev := range auditLog(t, root) {
		if ev.Action == "free" {
			out = append(out, ev.Line)
		}
	}
	return out
}

// free stops the listener and only it: a client connected to the port
// lives on. The audit log says who freed it, why and how.
func TestFreeStopsOnlyTheListener(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, nil, "tcp4,127.0.0.1,"+b.P(0))
	client := startReady(t, "python3", "-c", pyConnect, b.P(0))
	out, err := gracectlCmd(t, root, "free", b.P(0), "--reason", "stuck test server").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Freed port "+b.P(0)+": stopped pid "+strconv.Itoa(l.Process.Pid)+" (SIGTERM)") {
		t.Fatalf("%v: %s", err, out)
	}
	waitFor(t, "the listener to end", 60*time.Second, func() bool { return processGone(l.Process.Pid) })
	if processGone(client.Process.Pid) {
		t.Errorf("the client of the port was stopped too")
	}
	lines := freeLines(t, root)
	if len(lines) != 1 || !strings.Contains(lines[0], `"port":`+b.P(0)+`,"pids":[`+strconv.Itoa(l.Process.Pid)+`]`) ||
		!strings.Contains(lines[0], `"signal":"SIGTERM","by":"cli"`) || !strings.Contains(lines[0], `"by_user":"`) ||
		!strings.Contains(lines[0], `"reason":"stuck test server"`) {
		t.Errorf("audit: %q", lines)
	}
	// Nothing listens now: nothing to do, exit 0.
	if out, err := gracectlCmd(t, root, "free", b.P(0)).CombinedOutput(); err != nil || !strings.Contains(string(out), "nothing listens on port "+b.P(0)) {
		t.Errorf("again: %v: %s", err, out)
	}
}

// A listener that ignores SIGTERM is SIGKILLed after the grace time.
func TestFreeSIGKILLAfterGrace(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, nil, "ignore-term", "tcp6,::1,"+b.P(1))
	start := time.Now()
	out, err := gracectlCmd(t, root, "free", b.P(1), "--grace", "700ms", "--json").Output()
	if err != nil || !strings.Contains(string(out), `"signal": "SIGKILL"`) {
		t.Fatalf("%v: %s", err, out)
	}
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("SIGKILL after %s, before the grace time", took)
	}
	if !processGone(l.Process.Pid) {
		t.Errorf("pid %d still runs", l.Process.Pid)
	}
}

// --dry-run names what would be stopped and stops nothing.
func TestFreeDryRun(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, nil, "tcp4,127.0.0.1,"+b.P(2))
	out, err := gracectlCmd(t, root, "free", b.P(2), "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "would send SIGTERM to pid "+strconv.Itoa(l.Process.Pid)+" ") ||
		!strings.Contains(string(out), "would send SIGKILL after 10s") {
		t.Fatalf("%v: %s", err, out)
	}
	if processGone(l.Process.Pid) || len(freeLines(t, root)) != 0 {
		t.Errorf("a dry run stopped something or logged it")
	}
}

// A port gracectl manages whose owner runs and is not the caller needs
// --force; then the owner is stopped and its allocation released, in the
// audit log once each.
func TestFreeManagedNeedsForce(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, nil, "tcp4,127.0.0.1,"+b.P(3))
	if out, err := gracectlCmd(t, root, "adopt", b.P(3), "--service", "legacy").CombinedOutput(); err != nil {
		t.Fatalf("adopt: %v: %s", err, out)
	}
	out, err := gracectlCmd(t, root, "free", b.P(3)).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "allocated to legacy, whose owner pid "+strconv.Itoa(l.Process.Pid)+" is still running") ||
		!strings.Contains(string(out), "hint: use --force") {
		t.Fatalf("without --force: %v: %s", err, out)
	}
	if processGone(l.Process.Pid) {
		t.Fatal("stopped without --force")
	}
	out, err = gracectlCmd(t, root, "free", b.P(3), "--force").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Released port "+b.P(3)+" (legacy)") {
		t.Fatalf("--force: %v: %s", err, out)
	}
	if readRegistry(t, root).Get(b.Port(3)) != nil {
		t.Error("the stopped owner's allocation is still there")
	}
	lines := freeLines(t, root)
	if len(lines) != 1 || !strings.Contains(lines[0], `"service_name":"legacy"`) || !strings.Contains(lines[0], `"released":true,"forced":true`) {
		t.Errorf("audit: %q", lines)
	}
	checkAuditMatchesRegistry(t, root)
}

// A service under gracectl run: free --force stops it, and run, which
// supervises it, releases the port (free leaves the allocation to it), once.
func TestFreeUnderRun(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	r := startGracectl(t, root, "run", "--quiet", "--service", "runsvc", "--preferred", b.P(4), "--",
		"python3", "-c", pyListen, "tcp4,127.0.0.1,{port}")
	waitFor(t, "the service to listen", 60*time.Second, func() bool { return probeListening(b.Port(4)) })
	out, err := gracectlCmd(t, root, "free", b.P(4), "--force").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	r.wait(t, 60*time.Second)
	if readRegistry(t, root).Get(b.Port(4)) != nil {
		t.Error("the port is still allocated")
	}
	if strings.Contains(r.out.String(), "could not release") {
		t.Errorf("free released the port run supervises:\n%s", r.out)
	}
	for _, ev := range auditLog(t, root) {
		if ev.Action == "release" && !strings.Contains(ev.Line, `"by":"run"`) {
			t.Errorf("released by another than run: %s", ev.Line)
		}
	}
	if lines := freeLines(t, root); len(lines) != 1 || strings.Contains(lines[0], `"released":true`) {
		t.Errorf("free's audit line: %q", lines)
	}
	checkAuditMatchesRegistry(t, root)
}

// A port a container publishes is freed by stopping the container through
// its engine, not by signalling its proxy.
func TestFreeContainer(t *testing.T) {
	img := containertest.Image(t, "docker")
	root := t.TempDir()
	b := testPorts(t)
	name := fmt.Sprintf("gracectl-test-free-%d", os.Getpid())
	id := containertest.Start(t, "docker", append([]string{"--name", name, "-p", b.Addr(5) + ":8080"}, httpdArgs(img)...)...)
	waitFor(t, "the container's port to listen", 60*time.Second, func() bool { return probeListening(b.Port(5)) })
	// why names the container behind its engine's proxy, under the engine.
	d, code := why(t, root, b.Port(5))
	if code != 1 || len(d.Sockets) == 0 || len(d.Sockets[0].Processes) == 0 {
		t.Fatalf("why: exit %d, %+v", code, d)
	}
	if p := d.Sockets[0].Processes[0]; p.Container == nil || p.Container.Name != name || p.Supervisor == nil || p.Supervisor.Kind != "container" {
		t.Errorf("why: the proxy's process %+v does not name container %s under its engine", p, name)
	}
	out, err := gracectlCmd(t, root, "free", b.P(5), "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "would stop container "+name) {
		t.Fatalf("dry run: %v: %s", err, out)
	}
	out, err = gracectlCmd(t, root, "free", b.P(5)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Freed port "+b.P(5)+": stopped container "+name) || !strings.Contains(string(out), "(engine stop)") {
		t.Fatalf("%v: %s", err, out)
	}
	if running := containertest.Engine(t, "docker", "inspect", "--format", "{{.State.Running}}", id); running != "false" {
		t.Errorf("the container still runs")
	}
	if probeListening(b.Port(5)) {
		t.Errorf("port %d still listens", b.Port(5))
	}
	if lines := freeLines(t, root); len(lines) != 1 || !strings.Contains(lines[0], `"container":{`) || !strings.Contains(lines[0], `"signal":"engine stop"`) {
		t.Errorf("audit: %q", lines)
	}
}
