package cmd_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Tests of a shared host: another user's planted folders and links, the
// host and private registries, a group-shared registry, and the lock.
// The ones that need a second user run as root and switch to nobody with
// setpriv; they skip with a message otherwise.

const nobodyUID = 65534

// needRoot skips a test that needs root and setpriv.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (to act as user nobody with setpriv)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
}

// openDir is a temp folder every user may enter (t.TempDir's are 0700).
func openDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	d, err := os.MkdirTemp("", "gracectl-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}

// sharedBinary copies this test binary, which runs as gracectl under that
// name, where nobody can run it.
func sharedBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(openDir(t, 0o755), "gracectl")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// asNobody runs argv as user nobody (group nogroup, no other groups).
func asNobody(argv ...string) *exec.Cmd {
	return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...)
}

// env is the environment for a gracectl that resolves its own root: no
// GRACECTL_ROOT, the host registry at host.
func rootEnv(t *testing.T, host, home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GRACECTL_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "GRACECTL_HOST_ROOT="+host, "HOME="+home, "GRACECTL_RANGE="+testPorts(t).String(), "GRACECTL_WATCHDOG=off")
}

// The attack of issue 11, as it was reproduced: user nobody, in a sticky
// folder, plants proj/databases/port_registry and proj/logs/port_manager,
// links today's log to a root-only file and the lock to a new path; root
// runs allocate in proj/sub. The planted project is skipped with a warning
// naming it, the host registry is used, and neither link target is touched.
func TestPlantedProjectIsNotTrusted(t *testing.T) {
	needRoot(t)
	sticky := openDir(t, 0o1777)
	secret := filepath.Join(openDir(t, 0o755), "secret")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lockTarget := filepath.Join(openDir(t, 0o777), "planted.lock")
	proj := filepath.Join(sticky, "proj")
	logFile := filepath.Base(registry.LogPath("", time.Now()))
	plant := "mkdir -p " + proj + "/sub " + proj + "/databases/port_registry " + proj + "/logs/port_manager && " +
		"ln -s " + secret + " " + proj + "/logs/port_manager/" + logFile + " && " +
		"ln -s " + lockTarget + " " + proj + "/databases/port_registry/port_registry.json.lock"
	if out, err := asNobody("sh", "-c", plant).CombinedOutput(); err != nil {
		t.Fatalf("planting as nobody: %v: %s", err, out)
	}
	host := filepath.Join(openDir(t, 0o755), "host")
	c := exec.Command(sharedBinary(t), "allocate", "--service", "victim")
	c.Dir = filepath.Join(proj, "sub")
	c.Env = rootEnv(t, host, openDir(t, 0o700))
	out, err := c.Output()
	if err != nil {
		t.Fatalf("allocate as root: %v: %s", err, err.(*exec.ExitError).Stderr)
	}
	if strings.TrimSpace(string(out)) != testPorts(t).P(0) {
		t.Fatalf("allocate printed %q", out)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root only\n" {
		t.Errorf("the root-only file was written: %q", b)
	}
	if _, err := os.Lstat(lockTarget); err == nil {
		t.Errorf("the planted lock's target was created")
	}
	if r, err := registry.Open(host, time.Second).Read(context.Background()); err != nil || r.Get(testPorts(t).Port(0)) == nil {
		t.Errorf("the host registry does not hold the allocation (%v)", err)
	}
	// And it says why it skipped the project.
	c = exec.Command(sharedBinary(t), "status")
	c.Dir = filepath.Join(proj, "sub")
	c.Env = rootEnv(t, host, openDir(t, 0o700))
	b, _ := c.CombinedOutput()
	if !strings.Contains(string(b), "warning: skipping the registry in "+proj) || !strings.Contains(string(b), "owned by uid 65534") {
		t.Errorf("no warning naming the planted project:\n%s", b)
	}
}

// hostAndNobodysHome sets up a host registry only root writes (init
// without a group) and a home folder of user nobody's.
func hostAndNobodysHome(t *testing.T) (host, home string) {
	needRoot(t)
	host = filepath.Join(openDir(t, 0o755), "host")
	if _, err := registry.InitRoot(host, -1, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	home = openDir(t, 0o700)
	if err := os.Chown(home, nobodyUID, nobodyUID); err != nil {
		t.Fatal(err)
	}
	return host, home
}

// A user who cannot write the host registry gets one of their own under
// $HOME/.local/state/gracectl, told once, when it is created.
func TestPrivateRegistryForAnUnprivilegedUser(t *testing.T) {
	host, home := hostAndNobodysHome(t)
	work := openDir(t, 0o755)
	bin := sharedBinary(t)
	for i, wantNotice := range []bool{true, false} {
		c := asNobody(bin, "allocate", "--service", "mine")
		c.Dir, c.Env = work, rootEnv(t, host, home)
		var stderr strings.Builder
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("allocate %d as nobody: %v: %s", i, err, stderr.String())
		}
		if strings.TrimSpace(string(out)) == "" {
			t.Fatalf("allocate %d printed nothing", i)
		}
		private := filepath.Join(home, ".local", "state", "gracectl", registry.RegistryDir, registry.RegistryFile)
		got := strings.Contains(stderr.String(), "created registry "+private) && strings.Contains(stderr.String(), "gracectl init --group")
		if got != wantNotice {
			t.Errorf("allocate %d: notice %v, want %v:\n%s", i, got, wantNotice, stderr.String())
		}
	}
	if r, _ := registry.Open(host, time.Second).Read(context.Background()); len(r.Allocations) != 0 {
		t.Errorf("nobody changed the host registry")
	}
}

// init --group: the group's members share the host registry without sudo;
// the lock stays unreadable to everyone else, so no other user can hold
// the registry up with a shared lock.
func TestInitGroupSharesTheRegistry(t *testing.T) {
	needRoot(t)
	host := filepath.Join(openDir(t, 0o755), "host")
	bin := sharedBinary(t)
	c := exec.Command(bin, "init", "--group", "nogroup")
	c.Env = rootEnv(t, host, openDir(t, 0o700))
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "created registry") {
		t.Fatalf("init: %v: %s", err, out)
	}
	s := registry.Open(host, time.Second)
	for path, want := range map[string]os.FileMode{
		s.Dir():                              0o775 | os.ModeDir | os.ModeSetgid,
		filepath.Join(host, registry.LogDir): 0o775 | os.ModeDir | os.ModeSetgid,
		s.Path():                             0o664,
		s.LockPath():                         0o660,
	} {
		info, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want || info.Sys().(*syscall.Stat_t).Gid != nobodyUID {
			t.Errorf("%s: %v gid %d, want %v gid %d", path, info.Mode(), info.Sys().(*syscall.Stat_t).Gid, want, nobodyUID)
		}
	}
	// nobody is in group nogroup: it allocates in the host registry.
	c = asNobody(bin, "allocate", "--service", "member")
	c.Dir, c.Env = openDir(t, 0o755), rootEnv(t, host, openDir(t, 0o755))
	if out, err := c.CombinedOutput(); err != nil || strings.Contains(string(out), "created registry") {
		t.Fatalf("a group member's allocate: %v: %s", err, out)
	}
	if r, _ := s.Read(context.Background()); len(r.Allocations) != 1 {
		t.Fatalf("the member's allocation is not in the host registry")
	}
	logs, _ := filepath.Glob(filepath.Join(host, registry.LogDir, "*.jsonl"))
	for _, l := range logs {
		if info, _ := os.Lstat(l); info.Mode() != 0o664 || info.Sys().(*syscall.Stat_t).Gid != nobodyUID {
			t.Errorf("log %s: %v, want 0664 group nogroup", l, info.Mode())
		}
	}
	// Without init --group the lock is 0600: nobody cannot even open it.
	private := filepath.Join(openDir(t, 0o755), "solo")
	ps := registry.Open(private, time.Second)
	if _, err := ps.Allocate(context.Background(), registry.Request{Service: "x", Range: registry.Range(testPorts(t))}); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Lstat(ps.LockPath()); info.Mode() != 0o600 {
		t.Errorf("lock file %v, want 0600", info.Mode())
	}
	if out, err := asNobody("flock", "-s", "-n", ps.LockPath(), "true").CombinedOutput(); err == nil {
		t.Errorf("nobody took a shared lock on a 0600 lock file: %s", out)
	}
}

// Readers never lock: while a writer holds the lock, status answers at
// once and a writer waits (and times out).
func TestReadersDoNotLock(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	s := registry.Open(root, time.Second)
	if _, err := s.Allocate(context.Background(), registry.Request{Service: "held", Range: registry.Range(b)}); err != nil {
		t.Fatal(err)
	}
	hold := testenv.Command(t, "flock", "-x", s.LockPath(), "sleep", "600")
	if err := hold.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	defer func() { hold.Process.Kill(); hold.Wait() }()
	waitFor(t, "the lock to be held", 60*time.Second, func() bool {
		return exec.Command("flock", "-n", "-s", s.LockPath(), "true").Run() != nil
	})
	out, err := gracectlCmd(t, root, "status", "--range", b.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Port "+b.P(0)+": held") {
		t.Fatalf("status while a writer holds the lock: %v: %s", err, out)
	}
	c := gracectlCmd(t, root, "allocate", "--service", "w", "--range", b.String(), "--lock-timeout", "200ms")
	if err := c.Run(); c.ProcessState == nil || c.ProcessState.ExitCode() != 3 {
		t.Fatalf("allocate while the lock is held: %v, want exit 3", err)
	}
}

// A user who cannot write a registry is told whose it is and the ways out;
// check then exits 5 (it could not run), not 1 (an issue was found).
func TestPermissionDeniedHint(t *testing.T) {
	needRoot(t)
	root := filepath.Join(openDir(t, 0o755), "reg")
	s := registry.Open(root, time.Second)
	if _, err := s.Allocate(context.Background(), registry.Request{Service: "x", Range: registry.Range(testPorts(t))}); err != nil {
		t.Fatal(err)
	}
	bin := sharedBinary(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"allocate", "--service", "y"}, 1},
		{[]string{"check"}, 5},
	} {
		c := asNobody(append([]string{bin}, tc.args...)...)
		c.Env = append(rootEnv(t, root, openDir(t, 0o755)), "GRACECTL_ROOT="+root)
		out, _ := c.CombinedOutput()
		if c.ProcessState.ExitCode() != tc.code {
			t.Errorf("%v as nobody: exit %d, want %d:\n%s", tc.args, c.ProcessState.ExitCode(), tc.code, out)
		}
		if !strings.Contains(string(out), "you (nobody) may not") || strings.Contains(string(out), "permission denied") || !strings.Contains(string(out), "belongs to root:root") ||
			!strings.Contains(string(out), "gracectl init --group NAME") {
			t.Errorf("%v as nobody: no hint:\n%s", tc.args, out)
		}
	}
}

// Issue 23: a private registry never hands out a port the host registry
// holds, a reservation nothing listens on included: it reads the host
// registry (world-readable) without its lock, and status names the port.
func TestPrivateRegistryKeepsOffTheHostRegistrysPorts(t *testing.T) {
	host, home := hostAndNobodysHome(t)
	bin := sharedBinary(t)
	c := exec.Command(bin, "allocate", "--service", "grace_backend")
	c.Env = rootEnv(t, host, openDir(t, 0o700))
	if out, err := c.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), testPorts(t).P(0)) {
		t.Fatalf("allocate in the host registry as root: %v: %s", err, out)
	}
	// The host registry's lock is root's (0600): the private registry
	// never takes it, so a held lock does not hold nobody up either.
	lf, err := os.OpenFile(registry.Open(host, time.Second).LockPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	c = asNobody(bin, "allocate", "--service", "mine", "--preferred", testPorts(t).P(0))
	c.Dir, c.Env = openDir(t, 0o755), rootEnv(t, host, home)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("allocate as nobody: %v: %s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != testPorts(t).P(1) {
		t.Errorf("the private registry handed out %s, want %s (the host registry holds %s)", got, testPorts(t).P(1), testPorts(t).P(0))
	}
	if want := fmt.Sprintf("port %d is taken (by grace_backend in the host registry %s)", testPorts(t).Port(0), host); !strings.Contains(stderr.String(), want) {
		t.Errorf("allocate did not say why %d was passed over (want %q):\n%s", testPorts(t).Port(0), want, stderr.String())
	}
	c = asNobody(bin, "status")
	c.Dir, c.Env = openDir(t, 0o755), rootEnv(t, host, home)
	b, err := c.CombinedOutput()
	if want := fmt.Sprintf("Held by the host registry: 1 (%d grace_backend; in %s, skipped by allocate here)", testPorts(t).Port(0), host); err != nil || !strings.Contains(string(b), want) {
		t.Errorf("status as nobody (%v) does not say %q:\n%s", err, want, b)
	}
	// why and who say so too: the port is busy for this registry.
	for _, tc := range []struct{ cmd, want string }{
		{"why", fmt.Sprintf("because the host registry %s allocated it to grace_backend, and this registry does not hand it out", host)},
		{"who", fmt.Sprintf("port %d: allocated to grace_backend in the host registry %s (skipped by allocate here)", testPorts(t).Port(0), host)},
	} {
		c = asNobody(bin, tc.cmd, testPorts(t).P(0))
		c.Dir, c.Env = openDir(t, 0o755), rootEnv(t, host, home)
		b, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !strings.Contains(string(b), tc.want) || (tc.cmd == "why") != (ok && ee.ExitCode() == 1) {
			t.Errorf("%s as nobody (%v) does not say %q:\n%s", tc.cmd, err, tc.want, b)
		}
	}
}
