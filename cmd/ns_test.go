package cmd_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Owners in other namespaces. `gracectl run` inside
// its own PID namespace, on the host network (a container's situation),
// records the PID as seen inside; the host's watchdog must find the process
// by its NSpid and never call it dead while it runs. Needs root (unshare).

func needUnshare(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (unshare of PID and network namespaces)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	bin, err := exec.LookPath("gracectl")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

const nsServer = `
import os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT"])))
s.listen()
time.sleep(600)
`

// startInNamespaces runs `gracectl run` in new namespaces (unshare flags)
// and waits until its service is registered and listening there.
func startInNamespaces(t *testing.T, root, rg string, flags ...string) (*exec.Cmd, *registry.Allocation) {
	t.Helper()
	bin := needUnshare(t)
	args := append(flags, "--fork", "--mount-proc", "--kill-child", bin, "run", "--quiet", "--range", rg, "--", "python3", "-c", nsServer)
	c := testenv.Command(t, "unshare", args...)
	c.Env = append(c.Env, "GRACECTL_ROOT="+root, "GRACECTL_WATCHDOG=off")
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	var a *registry.Allocation
	waitFor(t, "the service in the namespace to register and listen", 60*time.Second, func() bool {
		r, err := registry.Open(root, time.Second).Read(context.Background())
		if err != nil {
			return false
		}
		for _, x := range r.Allocations {
			if x.HealthStatus == registry.StatusActive {
				a = x
				return true
			}
		}
		if strings.Contains(out.String(), "error") {
			t.Fatalf("gracectl run in namespaces: %s", out.String())
		}
		return false
	})
	return c, a
}

func TestOwnerInAnotherPIDNamespaceIsNotDead(t *testing.T) {
	b := testenv.Ports(t, 2)
	root := t.TempDir()
	rg := b.String()
	ns, a := startInNamespaces(t, root, rg, "--pid")
	self, _ := os.Readlink("/proc/self/ns/pid")
	if a.PIDNS == 0 || strings.Contains(self, strconv.FormatUint(a.PIDNS, 10)) {
		t.Fatalf("the owner's PID namespace was not recorded: %+v (ours %s)", a, self)
	}
	// The host's check: alive and active, nothing released, exit 0.
	for i := 0; i < 2; i++ {
		out, err := gracectlCmd(t, root, "check", "--range", rg).CombinedOutput()
		if err != nil {
			t.Fatalf("check (%v):\n%s", err, out)
		}
		if r := readRegistry(t, root).Get(a.Port); r == nil || r.HealthStatus != registry.StatusActive {
			t.Fatalf("after check %d the allocation is %+v\n%s", i, r, out)
		}
	}
	// release without --force: the owner runs, in its namespace.
	if out, err := gracectlCmd(t, root, "release", strconv.Itoa(a.Port)).CombinedOutput(); err == nil || !strings.Contains(string(out), "still running") {
		t.Fatalf("release without --force: %v %s", err, out)
	}
	// The namespace ends (its init, gracectl run, killed): now it is dead,
	// and the host's check releases the port.
	ns.Process.Signal(syscall.SIGKILL)
	ns.Wait()
	waitFor(t, "the namespace's processes to end", 60*time.Second, func() bool {
		return !probeListening(a.Port)
	})
	out, _ := gracectlCmd(t, root, "check", "--range", rg).CombinedOutput()
	if readRegistry(t, root).Get(a.Port) != nil {
		t.Fatalf("a dead owner in a gone namespace was not released:\n%s", out)
	}
}

func TestOwnerInAnotherNetworkNamespace(t *testing.T) {
	b := testenv.Ports(t, 2)
	root := t.TempDir()
	rg := b.String()
	_, a := startInNamespaces(t, root, rg, "--pid", "--net")
	if a.NetNS == 0 {
		t.Fatalf("the owner's network namespace was not recorded: %+v", a)
	}
	out, err := gracectlCmd(t, root, "check", "--json", "--range", rg).CombinedOutput()
	if err != nil {
		t.Fatalf("check (%v):\n%s", err, out)
	}
	for _, want := range []string{`"health_status": "active"`, `"listening": true`, `"listening_in_net_ns": ` + strconv.FormatUint(a.NetNS, 10),
		`"health": "skipped: listens in network namespace`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check --json lacks %s:\n%s", want, out)
		}
	}
}
