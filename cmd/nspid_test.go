package cmd_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gracectl/gracectl/probe"
)

// PIDs given in a PID namespace whose /proc is not its own (issue 22, item
// 12): under `unshare --pid --fork` without --mount-proc, /proc shows the
// host's processes, so `register --pid 9` read the host's pid 9 (a kworker)
// and recorded it as the owner. A PID that names no process of the
// namespace is refused saying why; one that does is found by its NSpid and
// recorded as the namespace numbers it. Needs root (unshare).
func TestPIDsFromAnotherNamespacesProc(t *testing.T) {
	bin := needUnshare(t)
	root := t.TempDir()
	port := testPorts(t).P(0)
	if out, err := gracectlCmd(t, root, "allocate", "--service", "ns", "--preferred", port).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// pid 9 is no process of the new namespace (gracectl is its pid 1).
	c := gracectlCmd(t, root, "register", port, "--pid", "9", "--service", "ns")
	c.Args = append([]string{"unshare", "--pid", "--fork", bin}, c.Args[1:]...)
	c.Path, _ = exec.LookPath("unshare")
	out, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "pid 9 is not a process of this PID namespace") ||
		!strings.Contains(string(out), "--mount-proc") {
		t.Errorf("register --pid 9 in a namespace without its own /proc: exit %d\n%s", c.ProcessState.ExitCode(), out)
	}
	if a := readRegistry(t, root).Get(testPorts(t).Port(0)); a == nil || a.PID != 0 {
		t.Fatalf("the allocation changed: %+v", a)
	}

	// sleep is pid 2 there: it is found and recorded as pid 2 of that
	// namespace, and the host finds the sleep, not its own pid 2.
	script := fmt.Sprintf("sleep 600 & %s register %s --pid $! --service ns && echo registered; wait", bin, port)
	ns := gracectlCmd(t, root)
	ns.Args = []string{"unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script}
	ns.Path, _ = exec.LookPath("unshare")
	ns.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := ns.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-ns.Process.Pid, syscall.SIGKILL); ns.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "registered\n" {
		t.Fatalf("register in the namespace: %q", line)
	}
	a := readRegistry(t, root).Get(testPorts(t).Port(0))
	self, _ := probe.SelfNamespaces()
	if a == nil || a.PID != 2 || a.PIDNS == 0 || a.PIDNS == self {
		t.Fatalf("the owner was not recorded as pid 2 of the namespace: %+v", a)
	}
	local, l := probe.Resolve(a.Owner())
	if l != probe.Running || local == 2 || !strings.HasPrefix(strings.Join(probe.Cmdline(local), " "), "sleep 600") {
		t.Fatalf("the owner resolves to pid %d (%v) %q, not the namespace's sleep", local, l, probe.Cmdline(local))
	}
	// who shows the real process, under both numbers.
	out, err = gracectlCmd(t, root, "who", port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("owner: pid 2 (pid %d here, in PID namespace %d) sleep 600", local, a.PIDNS)) {
		t.Errorf("who: %v\n%s", err, out)
	}
}

// who names the real process of an owner recorded in its own namespace
// (`gracectl run` inside unshare --pid --mount-proc): it showed the host's
// process with the namespace's PID (pid 10, a kworker).
func TestWhoShowsANamespacedOwner(t *testing.T) {
	root := t.TempDir()
	_, a := startInNamespaces(t, root, testPorts(t).String(), "--pid")
	local, l := probe.Resolve(a.Owner())
	if l != probe.Running || local == int(a.PID) {
		t.Fatalf("owner %+v resolves to %d (%v)", a, local, l)
	}
	out, err := gracectlCmd(t, root, "who", strconv.Itoa(a.Port)).CombinedOutput()
	want := fmt.Sprintf("owner: pid %d (pid %d here, in PID namespace %d) ", a.PID, local, a.PIDNS)
	if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "python3 -c") {
		t.Errorf("who: %v, want %q in\n%s", err, want, out)
	}
	// And --json has the process as found here.
	out, err = gracectlCmd(t, root, "who", strconv.Itoa(a.Port), "--json").Output()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf(`"owner": {
    "pid": %d,`, local)) {
		t.Errorf("who --json: %v\n%s", err, out)
	}
}
