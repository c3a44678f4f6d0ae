package cmd_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry"
)

// The smaller items of issue 22 (item 13).

// Long input is refused or cut, never echoed whole: a 120 KB service name,
// flag value or argument makes a short message, and a 100 KB command line
// is stored cut (the service still gets all of it).
func TestLongInputIsNeverEchoedWhole(t *testing.T) {
	root := t.TempDir()
	long := strings.Repeat("x", 120<<10)
	for _, args := range [][]string{
		{"allocate", "--service", long},
		{"allocate", "--service", "s", "--purpose", long},
		{"release", "--service", long},
		{"port", long},
		{"allocate", "--" + long},
		{"allocate", "--service", "s", "--pid", long},
		{"run", "--env", "1" + long, "--", "true"},
		{"completion", long},
	} {
		out, _ := gracectlCmd(t, root, args...).CombinedOutput()
		if len(out) > 4096 || len(out) == 0 {
			t.Errorf("%s %s...: %d bytes of output:\n%.300s", args[0], args[1][:min(len(args[1]), 20)], len(out), out)
		}
	}
	// A long command line: run runs it, the registry and the log keep at
	// most MaxCommand bytes of it and say how much was left out.
	out, err := gracectlCmd(t, root, "run", "-q", "--", "sh", "-c", `test ${#1} -eq 102400`, "sh", strings.Repeat("c", 100<<10)).CombinedOutput()
	if err != nil {
		t.Fatalf("run with a 100 KB argument: %v\n%.300s", err, out)
	}
	for _, ev := range auditLog(t, root) {
		if len(ev.Line) > registry.MaxCommand+1024 {
			t.Errorf("a %d-byte %s line in the log", len(ev.Line), ev.Action)
		}
		if ev.Action != "allocate" {
			continue
		}
		var line struct {
			Command []string `json:"command"`
		}
		if err := json.Unmarshal([]byte(ev.Line), &line); err != nil || len(line.Command) == 0 ||
			!strings.Contains(line.Command[len(line.Command)-1], "more bytes of the command line not stored") {
			t.Errorf("the stored command does not say it was cut: %v %.200s", err, ev.Line)
		}
	}
}

// --preferred 0 is no preference: no note that "port 0 is taken".
func TestPreferredZeroIsNoPreference(t *testing.T) {
	c := gracectlCmd(t, t.TempDir(), "allocate", "--service", "z", "--preferred", "0")
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil || strings.Contains(stderr.String(), "port 0") || strings.TrimSpace(string(out)) != testPorts(t).P(0) {
		t.Errorf("allocate --preferred 0: %v\n%s%s", err, out, stderr.String())
	}
}

// run --port a --port b with one free port says so: 1 of 2 free, the held
// ports counted as they are (it said one more than were held).
func TestNamedPortsShortMessage(t *testing.T) {
	root := t.TempDir()
	rg := testPorts(t).Sub(0, 2)
	for _, s := range []string{"one", "two"} {
		if out, err := gracectlCmd(t, root, "allocate", "--service", s, "--range", rg).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	c := gracectlCmd(t, root, "run", "--range", rg, "--port", "a", "--port", "b", "--", "true")
	out, _ := c.CombinedOutput()
	want := "only 1 of the 2 ports asked for are free in range " + rg + " (2 held by gracectl, 0 in use by unmanaged processes); none was allocated"
	if c.ProcessState.ExitCode() != 4 || !strings.Contains(string(out), want) {
		t.Errorf("run with two names and one free port: exit %d, want 4 and %q:\n%s", c.ProcessState.ExitCode(), want, out)
	}
	if n := len(readRegistry(t, root).Allocations); n != 2 {
		t.Errorf("%d allocations after the refused run, want 2", n)
	}
}
