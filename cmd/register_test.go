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
	out, err := gracectlCmd(t, root, "register", port, "--pid", pid, "--service", "svcA").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "port "+port+" is now allocation "+idC+` of service "svcC"`) ||
		!strings.Contains(string(out), "it changed hands since") {
		t.Errorf("register --service svcA after the port changed hands: %v\n%s", err, out)
	}
	// Allocation IDs are not remembered: the message says whose the port
	// is and to check the ID, without saying it changed hands.
	out, err = gracectlCmd(t, root, "register", port, "--pid", pid, "--id", idA).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "port "+port+` is allocated to service "svcC" (allocation `+idC) ||
		!strings.Contains(string(out), `not to allocation "`+idA+`": check the ID you gave`) || strings.Contains(string(out), "changed hands") {
		t.Errorf("register --id idA after the port changed hands: %v\n%s", err, out)
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

// A claim naming a service or allocation ID that is simply not the
// port's (nothing changed hands) says whose the port is and to check the
// name or ID given, not that the port changed hands.
func TestRegisterWrongClaim(t *testing.T) {
	root := t.TempDir()
	port := testPorts(t).P(0)
	out, err := gracectlCmd(t, root, "allocate", "--service", "svcA", "--preferred", port, "--json").Output()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	var a struct {
		ID string `json:"allocation_id"`
	}
	if err := json.Unmarshal(out, &a); err != nil || a.ID == "" {
		t.Fatalf("allocate: %v %s", err, out)
	}
	x := exec.Command("sleep", "600")
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Process.Kill(); x.Wait() })
	pid := strconv.Itoa(x.Process.Pid)
	for _, c := range []struct{ claim, want string }{
		{"--service=other", `not to service "other": check the service name you gave`},
		{"--id=deadbeef", `not to allocation "deadbeef": check the ID you gave`},
	} {
		out, err := gracectlCmd(t, root, "register", port, "--pid", pid, c.claim).CombinedOutput()
		s := string(out)
		if err == nil || !strings.Contains(s, "port "+port+` is allocated to service "svcA" (allocation `+a.ID) ||
			!strings.Contains(s, c.want) || strings.Contains(s, "changed hands") || strings.Count(s, "\n") != 1 {
			t.Errorf("register %s: %v\n%s", c.claim, err, out)
		}
	}
}
