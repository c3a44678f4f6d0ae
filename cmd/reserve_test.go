package cmd_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// inNetNS runs script with sh in a network namespace of its own (unshare
// -n, as root), with gracectl's test environment: the kernel's reserved
// ports are per network namespace, so the host's are never touched. It
// skips, saying why, where that cannot be done.
func inNetNS(t *testing.T, root, script string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: net.ipv4.ip_local_reserved_ports is written in a network namespace of the test's own (unshare -n)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1) to make a network namespace")
	}
	c := gracectlCmd(t, root)
	c.Path, c.Args = unshare, []string{"unshare", "-n", "sh", "-c", "set -x; " + script}
	out, err := c.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unshare failed") {
			t.Skipf("cannot make a network namespace here: %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

// init --reserve merges the range into the kernel's list, keeping every
// other entry (also those that overlap it); status and check say so;
// --unreserve takes out the range's ports only.
func TestInitReserve(t *testing.T) {
	root := t.TempDir()
	rg := testPorts(t)
	lo, hi := rg.Port(0), rg.Port(9)
	// Entries before, across the start and after the range.
	before := strings.Join([]string{itoa(lo - 50), itoa(lo-3) + "-" + itoa(lo+2), itoa(hi + 7)}, ",")
	out := inNetNS(t, root, `
f=/proc/sys/net/ipv4/ip_local_reserved_ports
echo `+before+` > $f
gracectl init --reserve && echo "after reserve: $(cat $f)"
gracectl init --reserve && echo "again: $(cat $f)"
gracectl status
gracectl status --json
gracectl check || true
gracectl init --unreserve && echo "after unreserve: $(cat $f)"
gracectl status
gracectl check || true
! gracectl init --reserve --range 40000-40100 && echo "refused: $(cat $f)"
`)
	for _, want := range []string{
		"after reserve: " + itoa(lo-50) + "," + itoa(lo-3) + "-" + itoa(hi) + "," + itoa(hi+7) + "\n",
		"again: " + itoa(lo-50) + "," + itoa(lo-3) + "-" + itoa(hi) + "," + itoa(hi+7) + "\n",
		"range " + rg.String() + " was already reserved",
		"Kernel Reserved: yes (net.ipv4.ip_local_reserved_ports)\n",
		`"reserved": "yes"`,
		"kernel reserved: yes",
		"after unreserve: " + itoa(lo-50) + "," + itoa(lo-3) + "-" + itoa(lo-1) + "," + itoa(hi+7) + "\n",
		"kernel reserved: no (gracectl init --reserve",
		"overlaps the kernel's ephemeral range",
		"refused: " + itoa(lo-50) + "," + itoa(lo-3) + "-" + itoa(lo-1) + "," + itoa(hi+7) + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Count(out, "Kernel Reserved:") != 1 {
		t.Errorf("status names the kernel's list when the range is not reserved (the seed's report has no such line):\n%s", out)
	}
}

// Without root the list cannot be written, and the message says so.
func TestInitReserveNeedsRoot(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv(1) to drop root")
	}
	root, err := os.MkdirTemp("", "gracectl-reserve-") // nobody must reach it: not under t.TempDir's 0700 folder
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	out := inNetNS(t, root, `! setpriv --reuid=nobody --regid=nogroup --clear-groups gracectl --root `+root+`/r init --reserve`)
	if !strings.Contains(out, "only root may change the kernel's reserved ports") {
		t.Errorf("no message naming root:\n%s", out)
	}
}
