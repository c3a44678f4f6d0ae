package cmd_test

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry/testenv"
)

// pyListen binds a socket for each argument "KIND,ADDR,PORT" (KIND tcp4,
// tcp6, udp4 or udp6; IPv6 sockets are IPv6-only), listens on the TCP
// ones, prints "ready" and sleeps. An argument "ignore-term" makes it
// ignore SIGTERM; "health=PORT,DELAY" serves HTTP on PORT (127.0.0.1)
// answering 503 to /health for DELAY seconds, then 200.
const pyListen = `
import http.server, signal, socket, sys, threading, time
start = time.time()
socks = []
for spec in sys.argv[1:]:
    if spec == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        continue
    if spec.startswith("health="):
        port, delay = spec[7:].split(",")
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/health" and time.time() - start >= float(delay)
                self.send_response(200 if ok else 503)
                self.end_headers()
            def log_message(self, *a):
                pass
        srv = http.server.HTTPServer(("127.0.0.1", int(port)), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        continue
    kind, addr, port = spec.split(",")
    fam = socket.AF_INET6 if kind.endswith("6") else socket.AF_INET
    typ = socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM
    s = socket.socket(fam, typ)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    if typ == socket.SOCK_STREAM:
        s.listen()
    socks.append(s)
print("ready", flush=True)
while True:
    time.sleep(1)
`

// startListener runs pyListen with specs (after prefix, a command such as
// unshare -n, if any) and waits until it is ready; it is killed when the
// test ends.
func startListener(t *testing.T, prefix []string, specs ...string) *exec.Cmd {
	t.Helper()
	return startReady(t, append(append(prefix, "python3", "-c", pyListen), specs...)...)
}

// startReady starts argv and waits until it prints "ready"; it is killed
// when the test ends.
func startReady(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	c := testenv.Command(t, argv[0], argv[1:]...)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("%q did not start", argv)
		}
	case <-time.After(testenv.Scale(60 * time.Second)):
		t.Fatalf("%q not ready after 60s", argv)
	}
	return c
}

// whyDoc is what the tests read of `why --json`.
type whyDoc struct {
	Port       int
	Free       bool
	Reasons    []string
	Allocation *struct {
		ServiceName string `json:"service_name"`
	}
	Owner           *whyProcess
	Sockets         []whySocket
	OtherNamespaces []whySocket `json:"other_namespaces"`
	Bindable        bool
	Ephemeral       struct{ Contains, Known bool }
	Reserved        struct{ Contains, Known bool } `json:"kernel_reserved"`
	Managed         struct{ Contains, Known bool }
}

type whySocket struct {
	Proto, Family, State, Local, Remote string
	Wildcard                            bool
	ExpiresSeconds                      float64 `json:"expires_seconds"`
	NetNS                               uint64  `json:"net_ns"`
	Processes                           []whyProcess
}

type whyProcess struct {
	PID        int
	Command    string
	Supervisor *struct {
		Kind string
		PID  int
	}
	Container *struct{ Name string }
}

// why runs `gracectl why PORT --json` and returns the answer and the exit
// code.
func why(t *testing.T, root string, port int) (whyDoc, int) {
	t.Helper()
	out, err := gracectlCmd(t, root, "why", "--json", strconv.Itoa(port)).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var d whyDoc
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("why %d --json: %v\n%s", port, err, out)
	}
	return d, code
}

func (d whyDoc) find(state, local string) *whySocket {
	for i, s := range d.Sockets {
		if s.State == state && s.Local == local {
			return &d.Sockets[i]
		}
	}
	return nil
}

// Listeners on IPv4 and IPv6, on one address or every one, TCP and UDP,
// each named with its process; exit 1.
func TestWhyListeners(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, nil, "tcp4,127.0.0.1,"+b.P(0), "tcp6,::,"+b.P(0), "udp4,0.0.0.0,"+b.P(1))
	pid := l.Process.Pid
	d, code := why(t, root, b.Port(0))
	if code != 1 || d.Free || len(d.Reasons) != 2 {
		t.Fatalf("exit %d, %+v", code, d)
	}
	v4, v6 := d.find("LISTEN", "127.0.0.1:"+b.P(0)), d.find("LISTEN", "[::]:"+b.P(0))
	if v4 == nil || v6 == nil || v4.Wildcard || !v6.Wildcard || v4.Family != "ipv4" || v6.Family != "ipv6" {
		t.Fatalf("listeners: %+v", d.Sockets)
	}
	for _, s := range []*whySocket{v4, v6} {
		if len(s.Processes) != 1 || s.Processes[0].PID != pid || !strings.Contains(s.Processes[0].Command, "python3") {
			t.Errorf("%s: processes %+v, want pid %d", s.Local, s.Processes, pid)
		}
	}
	if !d.Managed.Contains || !d.Ephemeral.Known || d.Ephemeral.Contains || d.Bindable {
		t.Errorf("facts: %+v", d)
	}
	d, code = why(t, root, b.Port(1))
	if u := d.find("UNCONN", "0.0.0.0:"+b.P(1)); code != 1 || u == nil || u.Proto != "udp" || !u.Wildcard || len(u.Processes) != 1 || u.Processes[0].PID != pid {
		t.Fatalf("udp: exit %d, %+v", code, d)
	}
	out, err := gracectlCmd(t, root, "why", b.P(0)).Output()
	if text := string(out); err == nil || !strings.HasPrefix(text, "port "+b.P(0)+": busy\n") ||
		!strings.Contains(text, "  because pid "+strconv.Itoa(pid)+" (python3) listens on 127.0.0.1:"+b.P(0)+" (TCP, loopback only)\n") ||
		!strings.Contains(text, "socket: tcp LISTEN [::]:"+b.P(0)+" (every address)\n") {
		t.Errorf("why %s: %v\n%s", b.P(0), err, out)
	}
	if d, code := why(t, root, b.Port(2)); code != 0 || !d.Free || len(d.Sockets) != 0 || !d.Bindable {
		t.Errorf("a free port: exit %d, %+v", code, d)
	}
}

// An outgoing connection's local port is busy, though nothing listens on
// it. Once the connection is closed its TIME-WAIT is shown with the time it
// has left: an outgoing connection's socket did not set SO_REUSEADDR, so
// its TIME-WAIT still keeps a server off the port; a server's own
// TIME-WAIT (its listener set SO_REUSEADDR) does not.
func TestWhyConnectionAndTimeWait(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	l, err := net.Listen("tcp", b.Addr(3))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: b.Port(4)}}
	c, err := d.Dial("tcp", b.Addr(3))
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	w, code := why(t, root, b.Port(4))
	est := w.find("ESTAB", b.Addr(4))
	if code != 1 || est == nil || est.Remote != b.Addr(3) || len(est.Processes) != 1 || est.Processes[0].PID != os.Getpid() {
		t.Fatalf("exit %d, %+v", code, w)
	}
	if len(w.Reasons) != 1 || !strings.Contains(w.Reasons[0], "has a TCP connection "+b.Addr(4)+" → "+b.Addr(3)) {
		t.Errorf("reasons %q", w.Reasons)
	}
	// The client closes first: its socket (local port 4) waits in
	// TIME-WAIT.
	c.Close()
	s.Close()
	timeWait := func(port int) bool {
		ss, _ := probe.SocketsOnPort(port)
		return len(ss) == 1 && ss[0].TimeWait()
	}
	waitFor(t, "the client's TIME-WAIT", 60*time.Second, func() bool { return timeWait(b.Port(4)) })
	w, code = why(t, root, b.Port(4))
	tw := w.find("TIME-WAIT", b.Addr(4))
	if code != 1 || w.Free || tw == nil || tw.ExpiresSeconds <= 0 || tw.ExpiresSeconds > 61 || len(tw.Processes) != 0 ||
		len(w.Reasons) != 1 || !strings.Contains(w.Reasons[0], "waits in TIME-WAIT for") || !strings.Contains(w.Reasons[0], "keeps a server off the port") {
		t.Fatalf("the client's TIME-WAIT: exit %d, %+v", code, w)
	}

	// A server's TIME-WAIT: it closes first.
	l2, err := net.Listen("tcp", b.Addr(7))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := net.Dial("tcp", b.Addr(7))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	c2.Read(make([]byte, 1))
	c2.Close()
	l2.Close()
	waitFor(t, "the server's TIME-WAIT", 60*time.Second, func() bool { return timeWait(b.Port(7)) })
	w, code = why(t, root, b.Port(7))
	if tw := w.find("TIME-WAIT", b.Addr(7)); code != 0 || !w.Free || tw == nil || tw.ExpiresSeconds <= 0 {
		t.Fatalf("the server's TIME-WAIT: exit %d, %+v", code, w)
	}
}

// An allocation makes the port busy; its listener is shown under gracectl
// run, its supervisor.
func TestWhyAllocationAndSupervisor(t *testing.T) {
	root := t.TempDir()
	b := testPorts(t)
	r := startGracectl(t, root, "run", "--quiet", "--service", "websvc", "--preferred", b.P(5), "--",
		"python3", "-c", pyListen, "tcp4,127.0.0.1,{port}")
	var d whyDoc
	waitFor(t, "the service to listen", 60*time.Second, func() bool {
		d, _ = why(t, root, b.Port(5))
		return len(d.Sockets) > 0 && d.Owner != nil
	})
	if d.Free || d.Allocation == nil || d.Allocation.ServiceName != "websvc" || !strings.Contains(strings.Join(d.Reasons, "|"), "gracectl allocated it to websvc") {
		t.Fatalf("%+v", d)
	}
	p := d.Sockets[0].Processes
	if len(p) != 1 || p[0].Supervisor == nil || p[0].Supervisor.Kind != "gracectl run" || p[0].Supervisor.PID != r.cmd.Process.Pid {
		t.Fatalf("supervisor of %+v, want gracectl run pid %d", p, r.cmd.Process.Pid)
	}
}

// A listener in another network namespace is shown, and does not keep the
// port from being bound here.
func TestWhyOtherNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the listener runs in a network namespace of its own (unshare -n)")
	}
	if out, err := exec.Command("unshare", "-n", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: %v %s", err, out)
	}
	root := t.TempDir()
	b := testPorts(t)
	l := startListener(t, []string{"unshare", "-n"}, "tcp4,0.0.0.0,"+b.P(6))
	d, code := why(t, root, b.Port(6))
	if code != 0 || !d.Free || len(d.OtherNamespaces) != 1 {
		t.Fatalf("exit %d, %+v", code, d)
	}
	o := d.OtherNamespaces[0]
	if o.State != "LISTEN" || o.NetNS == 0 || len(o.Processes) != 1 || o.Processes[0].PID != l.Process.Pid {
		t.Fatalf("%+v, want pid %d", o, l.Process.Pid)
	}
}
