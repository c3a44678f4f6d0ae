package cmd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The unit in docs/systemd is valid (systemd-analyze verify) and hardened
// (systemd-analyze security scores it 4.5 or below), where systemd-analyze
// is installed.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit is not checked here")
	}
	unit, err := os.ReadFile("../docs/systemd/gracectl-watch.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's binary to exist: this test's gracectl.
	bin, err := exec.LookPath("gracectl")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gracectl-watch.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/gracectl", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([\d.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security (%v) gave no score:\n%s", err, out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 4.5 {
		t.Errorf("exposure %.1f, want 4.5 or below:\n%s", score, out)
	}
}
