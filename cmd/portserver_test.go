package cmd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// gracectl as a test suite's portserver. Every test takes its ports from
// testenv.

var listeningOn = regexp.MustCompile(`Portserver listening on (\S+) `)

// startPortserver runs `watch --portserver ARGS...` over rg (with no
// ARGS, on a fresh abstract name) and returns the address it serves.
func startPortserver(t *testing.T, root, rg string, args ...string) (string, *started) {
	t.Helper()
	if len(args) == 0 {
		args = []string{"--portserver", fmt.Sprintf("@gracectl-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	}
	w := startGracectl(t, root, append([]string{"watch", "--range", rg}, args...)...)
	var addr string
	waitFor(t, "the portserver", 60*time.Second, func() bool {
		m := listeningOn.FindStringSubmatch(w.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr, w
}

// needPortpicker skips a test without Debian's portpicker.
func needPortpicker(t *testing.T) {
	t.Helper()
	if exec.Command("/usr/bin/python3", "-c", "import portpicker").Run() != nil {
		t.Skip("Debian's python3-portpicker is not installed (apt-get install python3-portpicker; .ci/run does)")
	}
}

// ask sends one request and returns the reply ("" for none).
func ask(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Scale(60 * time.Second)))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// clientScript asks with Debian's unmodified portpicker
// (get_port_from_port_server, which says None when the portserver gives
// no port, where pick_unused_port would pick one itself). Each argument
// after the address is WHO:COUNT, WHO being "self", "child" (a sleep it
// starts) or a pid; it prints "PID PORT" per request, then "done", and
// holds its ports until its stdin closes.
const clientScript = `
import os, subprocess, sys, portpicker
addr, kids = sys.argv[1], []
for spec in sys.argv[2:]:
    who, n = spec.split(":")
    if who == "self":
        pid = os.getpid()
    elif who == "child":
        kids.append(subprocess.Popen(["sleep", "3600"]))
        pid = kids[-1].pid
    else:
        pid = int(who)
    for _ in range(int(n)):
        print(pid, portpicker.get_port_from_port_server(addr, pid=pid), flush=True)
print("done", os.getpid(), flush=True)
sys.stdin.read()
for k in kids:
    k.kill()
`

// client is a running clientScript.
type client struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *syncBuffer
	pid   int
	// got lists the replies: pid asked for, and port (0 for none).
	got []reply
}

type reply struct{ pid, port int }

// startClient runs clientScript, as nobody if asNobody is set, and waits
// for its answers.
func startClient(t *testing.T, nobody bool, addr string, specs ...string) *client {
	t.Helper()
	dir := openDir(t, 0o755)
	script := filepath.Join(dir, "client.py")
	if err := os.WriteFile(script, []byte(clientScript), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"/usr/bin/python3", script, addr}, specs...)
	c := &client{out: &syncBuffer{}}
	if nobody {
		c.cmd = asNobody(argv...)
	} else {
		c.cmd = exec.Command(argv[0], argv[1:]...)
	}
	testenv.Own(t, c.cmd) // a group of its own, killed when t ends
	c.cmd.Stdout, c.cmd.Stderr = c.out, io.Discard
	c.stdin, _ = c.cmd.StdinPipe()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop() })
	waitFor(t, "the client's answers", 60*time.Second, func() bool { return strings.Contains(c.out.String(), "done") })
	for _, line := range strings.Split(strings.TrimSpace(c.out.String()), "\n") {
		f := strings.Fields(line)
		if f[0] == "done" {
			c.pid, _ = strconv.Atoi(f[1])
			break
		}
		pid, _ := strconv.Atoi(f[0])
		port, _ := strconv.Atoi(f[1]) // "None": 0
		c.got = append(c.got, reply{pid, port})
	}
	return c
}

// ports are the ports the client got, in order.
func (c *client) ports() []int {
	var out []int
	for _, r := range c.got {
		if r.port != 0 {
			out = append(out, r.port)
		}
	}
	return out
}

// stop ends the client and its children.
func (c *client) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testenv.Scale(60 * time.Second)):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Debian's unmodified portpicker client, pointed at gracectl's default
// socket: its ports come from the range, distinct, owned by the client.
// When it exits, its ports go back with an ordinary release line — the
// protocol working, not a crash: no dead, crashed, cleanup or resolved
// line, no issue counted (issue 23).
func TestPortserverWithPortpicker(t *testing.T) {
	needPortpicker(t)
	root := t.TempDir()
	b := testenv.Ports(t, 20)
	rg := b.String()
	addr, w := startPortserver(t, root, rg, "--portserver", "--interval", "1s")
	if addr != filepath.Join(root, "run", "portserver.sock") {
		t.Fatalf("the default address is %s", addr)
	}
	script := `
import os, sys, portpicker
ports = [portpicker.pick_unused_port() for _ in range(3)]
print(os.getpid(), *ports, flush=True)
sys.stdin.read()
`
	py := testenv.Command(t, "/usr/bin/python3", "-c", script)
	py.Env = append(py.Env, "PORTSERVER_ADDRESS="+addr)
	stdin, _ := py.StdinPipe()
	out := &syncBuffer{}
	py.Stdout, py.Stderr = out, out
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { py.Process.Kill(); py.Wait() })
	waitFor(t, "portpicker's ports", 60*time.Second, func() bool { return strings.Count(out.String(), " ") == 3 })
	f := strings.Fields(out.String())
	pid, _ := strconv.Atoi(f[0])
	seen := map[int]bool{}
	for _, s := range f[1:] {
		p, _ := strconv.Atoi(s)
		if p < b.Start || p > b.End || seen[p] {
			t.Fatalf("portpicker got %v, want three distinct ports of %s", f[1:], rg)
		}
		seen[p] = true
	}
	// Handed-out ports are recorded as the client's moments after the
	// reply (group commit), with its start time.
	waitFor(t, "the client to own its ports in the registry", 60*time.Second, func() bool {
		reg := readRegistry(t, root)
		for p := range seen {
			if a := reg.Get(p); a == nil || int(a.PID) != pid || a.PIDStart == 0 || a.StartedBy != "portserver" || a.ServiceName != "python3" {
				return false
			}
		}
		return true
	})
	stdin.Close()
	py.Wait()
	waitFor(t, "the client's ports to be released after it exited", 60*time.Second, func() bool {
		r := readRegistry(t, root)
		for p := range seen {
			if r.Get(p) != nil {
				return false
			}
		}
		return true
	})
	// Two cycles after it, nothing was counted or said as an issue.
	n := strings.Count(w.out.String(), "Health check:")
	waitFor(t, "two more cycles", 60*time.Second, func() bool { return strings.Count(w.out.String(), "Health check:") >= n+2 })
	log := w.out.String()
	for p := range seen {
		if !strings.Contains(log, fmt.Sprintf("[PORT-MANAGER] Released port %d (python3): the client exited\n", p)) {
			t.Errorf("no ordinary release line for port %d:\n%s", p, log)
		}
	}
	for _, bad := range []string{"dead (", "crashed", "Cleaning up", "resolved"} {
		if strings.Contains(log, bad) {
			t.Errorf("the watchdog log says %q after a client's normal exit:\n%s", bad, log)
		}
	}
	var st struct {
		Issues int `json:"issues_detected"`
		Stale  int `json:"stale_cleaned"`
	}
	state, err := os.ReadFile(filepath.Join(root, registry.RegistryDir, "watchdog.json"))
	if err != nil || json.Unmarshal(state, &st) != nil || st.Issues != 0 || st.Stale != 0 {
		t.Errorf("watchdog state after a client's exit: %s (%v)", state, err)
	}
	releases := 0
	for _, ev := range auditLog(t, root) {
		if ev.Action == "release" && seen[ev.Port] {
			releases++
			if !strings.Contains(ev.Line, `"reason":"the client exited"`) {
				t.Errorf("release line %s", ev.Line)
			}
		}
	}
	if releases != 3 {
		t.Errorf("%d release lines for the client's 3 ports", releases)
	}
}

// Malformed requests are closed with no reply and reserve nothing; a port
// must be free for UDP too; ports go round-robin; concurrent clients never
// share a port.
func TestPortserverProtocol(t *testing.T) {
	root := t.TempDir()
	b := testenv.Ports(t, 40)
	addr, _ := startPortserver(t, root, b.String(), "--portserver", fmt.Sprintf("@gracectl-test-%d", os.Getpid()),
		"--portserver-max-client-ports", "0", "--portserver-max-user-ports", "0")
	self := strconv.Itoa(os.Getpid())
	for _, bad := range []string{"abc\n", "1\n", "0\n", "-5\n", "999999999\n", "4194303\n", strings.Repeat("1", 25) + "\n", "\n"} {
		if got := ask(t, addr, bad); got != "" {
			t.Errorf("request %q answered %q, want no reply", bad, got)
		}
	}
	if n := len(readRegistry(t, root).Allocations); n != 0 {
		t.Fatalf("malformed requests left %d allocations", n)
	}
	// UDP: the range start is taken for UDP only.
	udp, err := net.ListenPacket("udp", b.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	first := strings.TrimSpace(ask(t, addr, self+"\n"))
	second := strings.TrimSpace(ask(t, addr, self+"\n"))
	if first != b.P(1) || second != b.P(2) {
		t.Fatalf("ports %q then %q, want %s (%s is taken for UDP) then %s (round-robin)", first, second, b.P(1), b.P(0), b.P(2))
	}
	// Concurrent clients.
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				p := strings.TrimSpace(ask(t, addr, self+"\n"))
				mu.Lock()
				got[p]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for p, n := range got {
		if p == "" || n != 1 {
			t.Errorf("port %q handed out %d times", p, n)
		}
	}
}

// The attack of issue 22, item 1: user nobody claimed pid 2 (kthreadd) over and over
// and was given ports owned by kthreadd, then the whole range. The
// portserver believes only the kernel: nobody may claim its own processes
// only, never a kernel thread or root's; root may claim anyone's but a
// kernel thread. Each claim records the process's start time. A flood of
// refused claims is one log line.
func TestPortserverBelievesOnlyTheKernel(t *testing.T) {
	needRoot(t)
	needPortpicker(t)
	root := openDir(t, 0o755)
	addr, w := startPortserver(t, root, testenv.Ports(t, 20).String(), "--portserver")
	rootSleep := testenv.Command(t, "sleep", "3600")
	if err := rootSleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rootSleep.Process.Kill(); rootSleep.Wait() })
	root2 := strconv.Itoa(rootSleep.Process.Pid)
	kt := kernelThread(t)
	nob := startClient(t, true, addr, kt+":200", root2+":3", "1:1", "self:1", "child:1")
	if p := nob.ports(); len(p) != 2 || nob.got[len(nob.got)-2].port == 0 || nob.got[len(nob.got)-1].port == 0 {
		t.Fatalf("nobody got %v; want a port for itself and for its child only", nob.got[len(nob.got)-5:])
	}
	child := nob.got[len(nob.got)-1].pid
	log := w.out.String()
	if n := strings.Count(log, "refused a request of user nobody (uid 65534)"); n != 2 {
		t.Errorf("%d refusal lines for one user's flood of two kinds, want one a minute for each:\n%s", n, log)
	}
	if !strings.Contains(log, "for pid "+kt+": it is a kernel thread") {
		t.Errorf("no line refusing kernel thread %s:\n%s", kt, log)
	}
	// Root may claim nobody's process, but not a kernel thread.
	rt := startClient(t, false, addr, strconv.Itoa(nob.pid)+":1", kt+":1")
	if rt.got[0].port == 0 || rt.got[1].port != 0 {
		t.Fatalf("root got %v; want a port for nobody's pid %d and none for kernel thread %s", rt.got, nob.pid, kt)
	}
	want := map[int]int{nob.got[len(nob.got)-2].port: nob.pid, nob.got[len(nob.got)-1].port: child, rt.got[0].port: nob.pid}
	waitFor(t, "the claimed processes to own their ports, with start times", 60*time.Second, func() bool {
		reg := readRegistry(t, root)
		for port, pid := range want {
			a := reg.Get(port)
			if a == nil || int(a.PID) != pid || a.PIDStart != startTime(t, pid) {
				return false
			}
		}
		return len(reg.Allocations) == 3+countPool(reg)
	})
	if !strings.Contains(w.out.String(), "it belongs to uid 0, and a client may claim only its own processes") {
		t.Errorf("no line refusing root's process to nobody:\n%s", w.out.String())
	}
}

// kernelThread is a kernel thread's pid (kthreadd is 2 on a host); the
// test skips where /proc shows none (a container).
func kernelThread(t *testing.T) string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&0x00200000 != 0 { // PF_KTHREAD
			return e.Name()
		}
	}
	t.Skip("no kernel thread is visible in /proc here (a container?)")
	return ""
}

// startTime is /proc/PID/stat's field 22.
func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// countPool counts the portserver's own reservations.
func countPool(reg *registry.Registry) int {
	n := 0
	for _, a := range reg.Allocations {
		if a.ServiceName == "gracectl_portserver" {
			n++
		}
	}
	return n
}

// A user's clients hold at most --portserver-max-user-ports, one client
// at most --portserver-max-client-ports; the rest get the protocol's empty
// answer and one log line each. The range stays open to others (root's
// allocate), and ports come back as their holders exit. By default a user
// gets half the range.
func TestPortserverLimits(t *testing.T) {
	needRoot(t)
	needPortpicker(t)
	root := openDir(t, 0o755)
	rg := testenv.Ports(t, 40).String()
	addr, w := startPortserver(t, root, rg, "--portserver", "--portserver-max-client-ports", "3", "--portserver-max-user-ports", "5")
	c := startClient(t, true, addr, "self:4", "child:3")
	if got := c.got; got[2].port == 0 || got[3].port != 0 || got[5].port == 0 || got[6].port != 0 || len(c.ports()) != 5 {
		t.Fatalf("nobody got %v; want 3 for itself, 2 for its child, then none", got)
	}
	log := w.out.String()
	for _, line := range []string{"holds 3 ports, the limit per client; further requests get no port",
		"user nobody (uid 65534) holds 5 ports, the limit per user; further requests get no port"} {
		if strings.Count(log, line) != 1 {
			t.Errorf("want one line %q:\n%s", line, log)
		}
	}
	if out, err := gracectlCmd(t, root, "allocate", "--service", "root_svc", "--range", rg).CombinedOutput(); err != nil {
		t.Fatalf("root's allocate: %v\n%s", err, out)
	}
	// Once the client has exited, the user may have ports again.
	c.stop()
	waitFor(t, "nobody to get a port again", 60*time.Second, func() bool {
		d := startClient(t, true, addr, "self:1")
		d.stop()
		return len(d.ports()) == 1
	})
	// The default: half the range per user.
	root2 := openDir(t, 0o755)
	addr2, w2 := startPortserver(t, root2, testenv.Ports(t, 20).String(), "--portserver")
	if !strings.Contains(w2.out.String(), "per user at most 10 ports and 256 connections, per client 10 ports") {
		t.Errorf("default limits not said:\n%s", w2.out.String())
	}
	e := startClient(t, true, addr2, "self:11")
	if len(e.ports()) != 10 {
		t.Errorf("with the default limits, nobody got %d of 20 ports", len(e.ports()))
	}
}

// One user has at most --portserver-max-user-conns connections open: the
// next is closed at once, without a reply. A connection that sends nothing
// is closed after the idle timeout.
func TestPortserverConnectionLimitAndIdleTimeout(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	addr, w := startPortserver(t, root, b.String(), "--portserver", "--portserver-max-user-conns", "4")
	var idle []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	waitFor(t, "the fifth connection to be closed at once", 60*time.Second, func() bool {
		c, err := net.Dial("unix", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testenv.Scale(60 * time.Second)))
		b, _ := io.ReadAll(c)
		return len(b) == 0 && strings.Contains(w.out.String(), "has 4 connections open, the limit per user")
	})
	for _, c := range idle {
		c.SetDeadline(time.Now().Add(testenv.Scale(60 * time.Second)))
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("an idle connection read %d bytes, %v; want the portserver to close it", n, err)
		}
	}
	if got := strings.TrimSpace(ask(t, addr, strconv.Itoa(os.Getpid())+"\n")); got != b.P(0) {
		t.Fatalf("after the idle connections closed, the answer was %q", got)
	}
}

// Issue 22, item 4: out of file descriptors, the portserver stopped for
// good while the watchdog looked healthy. Now accept errors are logged,
// retried with a pause, and the portserver answers again once descriptors
// are free. The watchdog's open-file limit is lowered instead of opening
// 27,000 connections.
func TestPortserverRecoversFromDescriptorExhaustion(t *testing.T) {
	root := t.TempDir()
	addr, w := startPortserver(t, root, testPorts(t).String(), "--portserver")
	pid := w.cmd.Process.Pid
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(len(fds) + 8)
	if err := lowerOpenFileLimit(pid, limit); err != nil {
		t.Skipf("cannot lower the watchdog's open-file limit: %v", err)
	}
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	waitFor(t, "the portserver to run out of descriptors", 60*time.Second, func() bool {
		if c, err := net.Dial("unix", addr); err == nil {
			flood = append(flood, c)
		}
		return strings.Contains(w.out.String(), "Portserver: cannot accept connections (out of file descriptors")
	})
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	self := strconv.Itoa(os.Getpid()) + "\n"
	waitFor(t, "an answer after the flood", 60*time.Second, func() bool {
		c, err := net.Dial("unix", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testenv.Scale(60 * time.Second)))
		io.WriteString(c, self)
		b, _ := io.ReadAll(c)
		return len(b) > 0
	})
	// The recovery line may follow the first answer: wait for it.
	waitFor(t, "the recovery to be logged", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Portserver: accepting connections again")
	})
}

// Issue 22, items 2 and 3: the pool's reservations are held by the
// watchdog — release and register want --force — and a pool port is
// checked under the registry lock before every answer: one released with
// --force and allocated to another service, or registered to another
// process with --force, is never handed out, and its owner is never
// replaced.
func TestPortserverPoolIsHeld(t *testing.T) {
	root := t.TempDir()
	b := testenv.Ports(t, 100)
	addr, w := startPortserver(t, root, b.String(), "--portserver", "--portserver-max-client-ports", "0", "--portserver-max-user-ports", "0")
	self := strconv.Itoa(os.Getpid()) + "\n"
	if got := strings.TrimSpace(ask(t, addr, self)); got != b.P(0) {
		t.Fatalf("first answer %q", got)
	}
	watchPID := strconv.Itoa(w.cmd.Process.Pid)
	sleep := testenv.Command(t, "sleep", "3600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	other := strconv.Itoa(sleep.Process.Pid)
	held := "is held by pid " + watchPID + " (gracectl_portserver), which is still running; use --force"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"release", "--service", "gracectl_portserver"}, b.P(1) + " (pid " + watchPID + "), "},
		{[]string{"release", b.P(3)}, held + " to release it anyway"},
		{[]string{"register", b.P(5), "--pid", other, "--service", "gracectl_portserver"}, held + " to register pid " + other + " anyway"},
	} {
		out, err := gracectlCmd(t, root, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v without --force: %v\n%s", c.args, err, out)
		}
	}
	for _, args := range [][]string{
		{"release", b.P(3), "--force"},
		{"allocate", "--service", "victim", "--preferred", b.P(3), "--range", b.String()},
		{"register", b.P(5), "--pid", other, "--service", "gracectl_portserver", "--force"},
	} {
		if out, err := gracectlCmd(t, root, args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// The pool held the block's ports 1-9; it refills from port 10 on.
	var got []string
	for range 7 {
		got = append(got, strings.TrimSpace(ask(t, addr, self)))
	}
	if want := []string{b.P(1), b.P(2), b.P(4), b.P(6), b.P(7), b.P(8), b.P(9)}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("then the portserver answered %v; want %v: the pool's ports but %s and %s", got, want, b.P(3), b.P(5))
	}
	reg := readRegistry(t, root)
	if a := reg.Get(b.Port(3)); a == nil || a.ServiceName != "victim" {
		t.Errorf("%s is %+v, want victim's", b.P(3), a)
	}
	if a := reg.Get(b.Port(5)); a == nil || strconv.Itoa(int(a.PID)) != other {
		t.Errorf("%s is %+v, want pid %s's", b.P(5), a, other)
	}
}

// The default address is a socket in the state root's run folder, which
// only the registry's owner can create entries in: another user cannot
// squat it, even before the first watchdog starts; a socket left by a
// killed watchdog is replaced; a path in a folder others can write is
// refused. The abstract @name form can be squatted — which is why it is
// not the default: the watchdog then exits 6 and says so.
func TestPortserverAddress(t *testing.T) {
	needRoot(t)
	root := openDir(t, 0o755)
	rg := testPorts(t).String()
	if out, err := gracectlCmd(t, root, "allocate", "--service", "x").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.Mkdir(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(root, "run", "portserver.sock")
	squat := fmt.Sprintf("import socket; s = socket.socket(socket.AF_UNIX); s.bind(%q)", sock)
	if out, err := asNobody("/usr/bin/python3", "-c", squat).CombinedOutput(); err == nil || !strings.Contains(string(out), "PermissionError") {
		t.Fatalf("nobody could bind the default socket's path: %v\n%s", err, out)
	}
	addr, w := startPortserver(t, root, rg, "--portserver")
	if addr != sock {
		t.Fatalf("address %s", addr)
	}
	for path, mode := range map[string]os.FileMode{filepath.Dir(sock): os.ModeDir | 0o755, sock: os.ModeSocket | 0o666} {
		if info, err := os.Lstat(path); err != nil || info.Mode() != mode {
			t.Errorf("%s: %v, %v; want %v", path, info.Mode(), err, mode)
		}
	}
	// Killed, it leaves its socket; the next watchdog replaces it.
	w.cmd.Process.Kill()
	w.wait(t, 60*time.Second)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("the killed watchdog's socket: %v", err)
	}
	if addr, _ = startPortserver(t, root, rg, "--portserver"); ask(t, addr, strconv.Itoa(os.Getpid())+"\n") == "" {
		t.Errorf("no answer on the replaced socket")
	}
	// A path in a folder every user can write is refused.
	tmp := openDir(t, 0o1777)
	out, err := gracectlCmd(t, t.TempDir(), "watch", "--portserver", filepath.Join(tmp, "ps.sock")).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "is writable by every user, so another user could put a socket there before gracectl does") {
		t.Errorf("a path in a world-writable folder: exit %d\n%s", code, out)
	}
	// The abstract form: nobody takes the name first.
	name := fmt.Sprintf("@gracectl-squat-%d", os.Getpid())
	holder := asNobody("/usr/bin/python3", "-c", fmt.Sprintf(
		"import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind('\\0' + %q); s.listen(); print('bound', flush=True); sys.stdin.read()", name[1:]))
	holdOut := &syncBuffer{}
	holder.Stdout = holdOut
	in, _ := holder.StdinPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); holder.Wait() })
	waitFor(t, "nobody to bind the abstract name", 60*time.Second, func() bool { return strings.Contains(holdOut.String(), "bound") })
	out, err = gracectlCmd(t, t.TempDir(), "watch", "--portserver", name).CombinedOutput()
	if code := exitCode(err); code != 6 || !strings.Contains(string(out), "is already taken by another process; any local user can take a free abstract address") ||
		!strings.Contains(string(out), "hint: serve on the default socket instead, which no other user can take: --portserver alone") {
		t.Errorf("squatted abstract address: exit %d\n%s", code, out)
	}
}
