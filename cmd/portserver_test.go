package cmd_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gracectl as a test suite's portserver (ports 24340-24399).

// startPortserver runs `watch --portserver @name` over rg and returns the
// address.
func startPortserver(t *testing.T, root, rg string) string {
	t.Helper()
	addr := fmt.Sprintf("@gracectl-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	w := startGracectl(t, root, "watch", "--range", rg, "--portserver", addr)
	waitFor(t, "the portserver", 10*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Portserver listening on "+addr)
	})
	return addr
}

// ask sends one request and returns the reply ("" for none).
func ask(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// Debian's unmodified portpicker client, pointed at gracectl: its ports
// come from the range, distinct, owned by the client, and go back when the
// client exits.
func TestPortserverWithPortpicker(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import portpicker").Run() != nil {
		t.Skip("Debian's python3-portpicker is not installed (apt-get install python3-portpicker; .ci/run does)")
	}
	root := t.TempDir()
	const rg = "24340-24359"
	addr := startPortserver(t, root, rg)
	script := `
import os, sys, portpicker
ports = [portpicker.pick_unused_port() for _ in range(3)]
print(os.getpid(), *ports, flush=True)
sys.stdin.read()
`
	py := exec.Command("/usr/bin/python3", "-c", script)
	py.Env = append(os.Environ(), "PORTSERVER_ADDRESS="+addr)
	stdin, _ := py.StdinPipe()
	out := &syncBuffer{}
	py.Stdout, py.Stderr = out, out
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "portpicker's ports", 20*time.Second, func() bool { return strings.Count(out.String(), " ") == 3 })
	f := strings.Fields(out.String())
	pid, _ := strconv.Atoi(f[0])
	seen := map[int]bool{}
	for _, s := range f[1:] {
		p, _ := strconv.Atoi(s)
		if p < 24340 || p > 24359 || seen[p] {
			t.Fatalf("portpicker got %v, want three distinct ports of %s", f[1:], rg)
		}
		seen[p] = true
	}
	// Handed-out ports are recorded as the client's moments after the
	// reply (group commit).
	waitFor(t, "the client to own its ports in the registry", 10*time.Second, func() bool {
		reg := readRegistry(t, root)
		for p := range seen {
			if a := reg.Get(p); a == nil || int(a.PID) != pid || a.StartedBy != "portserver" || a.ServiceName != "python3" {
				return false
			}
		}
		return true
	})
	stdin.Close()
	py.Wait()
	waitFor(t, "the client's ports to be released after it exited", 10*time.Second, func() bool {
		r := readRegistry(t, root)
		for p := range seen {
			if r.Get(p) != nil {
				return false
			}
		}
		return true
	})
}

// Malformed requests are closed with no reply and reserve nothing; a port
// must be free for UDP too; ports go round-robin; concurrent clients never
// share a port.
func TestPortserverProtocol(t *testing.T) {
	root := t.TempDir()
	const rg = "24360-24399"
	addr := startPortserver(t, root, rg)
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
	udp, err := net.ListenPacket("udp", "127.0.0.1:24360")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	first := strings.TrimSpace(ask(t, addr, self+"\n"))
	second := strings.TrimSpace(ask(t, addr, self+"\n"))
	if first != "24361" || second != "24362" {
		t.Fatalf("ports %q then %q, want 24361 (24360 is taken for UDP) then 24362 (round-robin)", first, second)
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
