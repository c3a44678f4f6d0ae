package cmd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The registered PID is the child's, with its start time; SIGTERM to
// gracectl reaches the child; the port is released; exit code 143.
func TestRunRegistersChildAndForwardsSIGTERM(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	pidFile := filepath.Join(root, "child.pid")
	g := startGracectl(t, root, "run", "--range", b.String(), "--service", "sleeper", "--",
		"sh", "-c", `echo $$ > "$0"; exec sleep 600`, pidFile)
	child := readPID(t, pidFile)
	var a *registry.Allocation
	waitFor(t, "the child's registration", 60*time.Second, func() bool {
		a = readRegistry(t, root).Get(b.Port(0))
		return a != nil && int(a.PID) == child
	})
	id, err := probe.Identify(child)
	if err != nil {
		t.Fatal(err)
	}
	if a.PIDStart == 0 || a.PIDStart != id.Start || a.BootID != id.Boot {
		t.Fatalf("registered start %d/%q, child has %d/%q", a.PIDStart, a.BootID, id.Start, id.Boot)
	}
	if int(a.PID) == g.cmd.Process.Pid {
		t.Fatal("registry names gracectl, not the child")
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := g.wait(t, 60*time.Second); code != 143 {
		t.Fatalf("exit code %d, want 143; output:\n%s", code, g.out)
	}
	if !processGone(child) {
		t.Fatal("child still running after SIGTERM")
	}
	if readRegistry(t, root).Get(b.Port(0)) != nil {
		t.Fatal("port not released")
	}
}

// SIGKILL of gracectl: the child is stopped (parent-death signal) and the
// registry still names the child's PID for the watchdog.
func TestRunKilledGracectlStopsChild(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	pidFile := filepath.Join(root, "child.pid")
	g := startGracectl(t, root, "run", "--range", b.String(), "--",
		"sh", "-c", `echo $$ > "$0"; exec sleep 600`, pidFile)
	child := readPID(t, pidFile)
	waitFor(t, "registration", 60*time.Second, func() bool {
		a := readRegistry(t, root).Get(b.Port(0))
		return a != nil && int(a.PID) == child
	})
	g.cmd.Process.Kill()
	g.wait(t, 60*time.Second)
	waitFor(t, "the child to stop", 60*time.Second, func() bool { return processGone(child) })
	a := readRegistry(t, root).Get(b.Port(0))
	if a == nil || int(a.PID) != child {
		t.Fatalf("registry after SIGKILL: %+v, want pid %d", a, child)
	}
}

// A service whose worker keeps the port after the service exits: the port
// is not released, and the worker becomes its tracked owner.
// The script of TestRunGrandchildKeepsPort and TestRunWaitsForDaemon: the
// child binds the port, forks a daemon (its own session) that keeps the
// socket, writes the daemon's PID and exits.
const daemonizingScript = `
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
if os.fork() == 0:
    os.setsid()  # a daemon: its own session
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(600)
else:
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    os._exit(0)
`

// By default run outlives a child that daemonized: the daemon, re-parented
// to gracectl (the child subreaper), owns the port while it lives, and
// when it ends run exits with the child's status and releases the port.
// A daemon that binds only later owns it too, from the start.
func TestRunWaitsForDaemon(t *testing.T) {
	b := testPorts(t)
	if runtime.GOOS != "linux" {
		t.Skip("child subreaper: Linux only")
	}
	for _, tc := range []struct{ name, port, script string }{
		{"binds then daemonizes", b.P(0), daemonizingScript},
		{"daemon binds later", b.P(1), `
import os, socket, sys, time
if os.fork() == 0:
    os.setsid()
    open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.5)
    s = socket.socket()
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen()
    time.sleep(600)
else:
    os._exit(0)
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			pidFile := filepath.Join(root, "worker.pid")
			g := startGracectl(t, root, "run", "--range", tc.port+"-"+tc.port, "--", "python3", "-c", tc.script, pidFile)
			waitFor(t, "the worker's pid", 60*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil })
			worker := readPID(t, pidFile)
			port, _ := strconv.Atoi(tc.port)
			waitFor(t, "the daemon to own the port and listen", 60*time.Second, func() bool {
				a := readRegistry(t, root).Get(port)
				return a != nil && int(a.PID) == worker && probeListening(port)
			})
			select {
			case <-g.done:
				t.Fatalf("run exited while the daemon lives:\n%s", g.out)
			default:
			}
			syscall.Kill(worker, syscall.SIGKILL)
			if code := g.wait(t, 60*time.Second); code != 0 {
				t.Fatalf("exit %d, want the child's 0:\n%s", code, g.out)
			}
			if readRegistry(t, root).Get(port) != nil {
				t.Fatalf("port %d not released after the daemon ended", port)
			}
		})
	}
}

// With --no-wait-descendants run ends with its child; a daemon still
// listening on the port becomes its owner, and the port is not released.
func TestRunGrandchildKeepsPort(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	pidFile := filepath.Join(root, "worker.pid")
	script := daemonizingScript
	g := startGracectl(t, root, "run", "--range", b.String(), "--no-wait-descendants", "--", "python3", "-c", script, pidFile)
	if code := g.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit %d: %s", code, g.out)
	}
	worker := readPID(t, pidFile)
	defer syscall.Kill(worker, syscall.SIGKILL)
	if !strings.Contains(g.out.String(), fmt.Sprintf("still in use by pid %d", worker)) {
		t.Fatalf("output does not report the worker:\n%s", g.out)
	}
	a := readRegistry(t, root).Get(b.Port(0))
	if a == nil || int(a.PID) != worker {
		t.Fatalf("registry: %+v, want the port kept and owned by pid %d", a, worker)
	}
}

// Three runs at once get three distinct ports, all shown by status.
func TestRunThreeServices(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	var gs []*started
	for i := 0; i < 3; i++ {
		g := startGracectl(t, root, "run", "--range", b.String(), "--health-path", "/health", "--", "python3", serveScript(t))
		g.cmd.Env = append(g.cmd.Env, "SERVE_QUIET=1")
		gs = append(gs, g)
	}
	waitFor(t, "three active services", 60*time.Second, func() bool {
		r := readRegistry(t, root)
		n := 0
		for _, a := range r.Allocations {
			if a.HealthStatus == registry.StatusActive && a.PID > 0 {
				n++
			}
		}
		return n == 3
	})
	out, err := gracectlCmd(t, root, "status", "--range", b.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.P(0), b.P(1), b.P(2)} {
		if !strings.Contains(string(out), "Port "+p+": serve") {
			t.Fatalf("status lacks port %s:\n%s", p, out)
		}
		if body := httpGet(t, "http://127.0.0.1:"+p+"/health"); !strings.Contains(body, `"status": "ok"`) {
			t.Fatalf("port %s answers %q", p, body)
		}
	}
	if strings.Count(string(out), "  PID: ") != 3 {
		t.Fatalf("status:\n%s", out)
	}
	for _, g := range gs {
		g.cmd.Process.Signal(syscall.SIGINT)
	}
	for _, g := range gs {
		g.wait(t, 60*time.Second)
	}
	if n := len(readRegistry(t, root).Allocations); n != 0 {
		t.Fatalf("%d allocations left", n)
	}
}

// --listen-fd hands the bound socket to the Python example and to a Go
// server using go-systemd's activation package.
func TestRunListenFD(t *testing.T) {
	b := testPorts(t)
	sdchild := filepath.Join(t.TempDir(), "sdchild")
	if out, err := exec.Command("go", "build", "-o", sdchild, "./testdata/sdchild").CombinedOutput(); err != nil {
		t.Fatalf("building sdchild: %v\n%s", err, out)
	}
	for i, argv := range [][]string{{"python3", serveScript(t)}, {sdchild}} {
		t.Run(filepath.Base(argv[len(argv)-1]), func(t *testing.T) {
			root := t.TempDir()
			port := b.Port(0) + i
			rg := fmt.Sprintf("%d-%d", port, port)
			g := startGracectl(t, root, append([]string{"run", "--listen-fd", "--range", rg, "--"}, argv...)...)
			var a *registry.Allocation
			waitFor(t, "the service to be up", 60*time.Second, func() bool {
				a = readRegistry(t, root).Get(port)
				return a != nil && a.HealthStatus == registry.StatusActive
			})
			body := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/health")
			if !strings.Contains(body, fmt.Sprintf(`"pid": %d`, a.PID)) && !strings.Contains(body, fmt.Sprintf(`"pid":%d`, a.PID)) {
				t.Fatalf("health %q does not come from the registered pid %d", body, a.PID)
			}
			g.cmd.Process.Signal(syscall.SIGTERM)
			g.wait(t, 60*time.Second)
			if !strings.Contains(g.out.String(), "inherited socket") && !strings.Contains(g.out.String(), "sdchild: serving") {
				t.Fatalf("child did not use the passed socket:\n%s", g.out)
			}
			if readRegistry(t, root).Get(port) != nil {
				t.Fatalf("port not released:\n%s", g.out)
			}
		})
	}
}

// Stopping signals reach the child's whole process group: a worker the
// service spawned does not outlive it.
func TestRunSignalReachesProcessGroup(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	pidFile := filepath.Join(root, "worker.pid")
	g := startGracectl(t, root, "run", "--range", b.String(), "--",
		"sh", "-c", `sleep 600 & echo $! > "$0"; wait`, pidFile)
	worker := readPID(t, pidFile)
	waitFor(t, "registration", 60*time.Second, func() bool {
		a := readRegistry(t, root).Get(b.Port(0))
		return a != nil && a.PID > 0 && int(a.PID) != g.cmd.Process.Pid
	})
	g.cmd.Process.Signal(syscall.SIGTERM)
	g.wait(t, 60*time.Second)
	waitFor(t, "the worker to stop", 60*time.Second, func() bool { return processGone(worker) })
}

// On a terminal: the child's group gets the terminal, so an interactive
// program reads its input, and the banner uses emoji.
func TestRunInteractiveOnTerminal(t *testing.T) {
	b := testPorts(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed; skipped")
	}
	self, _ := exec.LookPath("gracectl")
	root := t.TempDir()
	c := testenv.Command(t, "script", "-qec", self+" run --range "+b.String()+" -- sh -c 'read x; echo got:$x'", "/dev/null")
	c.Env = append(c.Env, "GRACECTL_ROOT="+root, "GRACECTL_WATCHDOG=off")
	// Input stays open until the end: script(1) may stop at end of input.
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.Write([]byte("hello\n"))
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v\n%s", err, buf.String())
		}
	case <-time.After(testenv.Scale(60 * time.Second)):
		c.Process.Kill()
		t.Fatalf("no exit within %s:\n%s", testenv.Scale(60*time.Second), buf.String())
	}
	out := buf.String()
	for _, want := range []string{"got:hello", "✅ Allocated port " + b.P(0), "Released port " + b.P(0)} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
