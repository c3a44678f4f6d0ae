package cmd_test

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// A late register does not take over another service's port (issue 22,
// item 8): svcA reserves a port, its lease runs out and the watchdog
// releases it, svcC reserves the same port, and then svcA registers its
// process for the port. Named by service or by allocation ID, the claim is
// refused: the port changed hands. svcC's own claim works; --force takes it
// anyway and the log says so.
func TestLateRegisterIsRefused(t *testing.T) {
	root := t.TempDir()
	port := testPorts(t).P(0)
	allocate := func(service string) (id string) {
		t.Helper()
		out, err := gracectlCmd(t, root, "allocate", "--service", service, "--preferred", port, "--json").Output()
		if err != nil {
			t.Fatalf("allocate %s: %v", service, err)
		}
		var a struct {
			Port int    `json:"port"`
			ID   string `json:"allocation_id"`
		}
		if err := json.Unmarshal(out, &a); err != nil || strconv.Itoa(a.Port) != port || a.ID == "" {
			t.Fatalf("allocate %s: %v %s", service, err, out)
		}
		return a.ID
	}
	idA := allocate("svcA")
	// The lease runs out (check with a lease of 1ns releases it at once).
	if out, _ := gracectlCmd(t, root, "check", "--lease", "1ns").CombinedOutput(); !strings.Contains(string(out), "stale reservation") {
		t.Fatalf("check did not release the reservation:\n%s", out)
	}
	idC := allocate("svcC")
	x := exec.Command("sleep", "600")
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Process.Kill(); x.Wait() })
	pid := strconv.Itoa(x.Process.Pid)
	for _, claim := range [][]string{{"--service", "svcA"}, {"--id", idA}} {
		out, err := gracectlCmd(t, root, append([]string{"register", port, "--pid", pid}, claim...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "port "+port+" is now allocation "+idC+` of service "svcC"`) ||
			!strings.Contains(string(out), "it changed hands since") {
			t.Errorf("register %v after the port changed hands: %v\n%s", claim, err, out)
		}
	}
	if a := readRegistry(t, root).Get(testPorts(t).Port(0)); a == nil || a.ServiceName != "svcC" || a.PID != 0 {
		t.Fatalf("svcC's allocation was changed: %+v", a)
	}
	if out, err := gracectlCmd(t, root, "register", port, "--pid", pid, "--id", idC).CombinedOutput(); err != nil {
		t.Fatalf("svcC's own claim: %v\n%s", err, out)
	}
	// A forced claim says so in the log.
	if out, err := gracectlCmd(t, root, "register", port, "--pid", pid, "--service", "svcA", "--force").CombinedOutput(); err != nil {
		t.Fatalf("register --force: %v\n%s", err, out)
	}
	evs := auditLog(t, root)
	if last := evs[len(evs)-1]; last.Action != "register" || !strings.Contains(last.Line, `"forced":true`) {
		t.Errorf("the forced claim's line: %s", last.Line)
	}
}
