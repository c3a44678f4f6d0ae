package cmd_test

import (
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Fault suite. `make test` runs the short versions; `make chaos` runs
// TestChaos with GRACECTL_CHAOS_OPS=1000.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Workers run allocate/register/release while a killer sends SIGKILL to
// random gracectl processes at random moments. Afterwards the registry
// parses, every port an allocate printed (and exited 0) is in the registry
// or has a release line, every log line is whole JSON, no temp file is
// left behind, and the audit trail matches the registry change for change
// (checkAuditMatchesRegistry).
func TestChaos(t *testing.T) {
	b := testenv.Ports(t, 200)
	ops := envInt("GRACECTL_CHAOS_OPS", 150)
	root := t.TempDir()
	rg := b.String()
	var (
		mu      sync.Mutex
		printed []int
		running = map[*exec.Cmd]bool{}
		done    atomic.Int64
		killed  atomic.Int64
	)
	self := strconv.Itoa(os.Getpid())
	run := func(args ...string) (string, bool) {
		c := gracectlCmd(t, root, args...)
		c.Env = append(c.Env, "GRACECTL_LOCK_TIMEOUT=30s")
		var out, errOut strings.Builder
		c.Stdout, c.Stderr = &out, &errOut
		if err := c.Start(); err != nil {
			t.Error(err)
			return "", false
		}
		mu.Lock()
		running[c] = true
		mu.Unlock()
		err := c.Wait()
		mu.Lock()
		delete(running, c)
		mu.Unlock()
		if err != nil {
			return out.String() + errOut.String(), false
		}
		return out.String(), true
	}
	pick := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(printed) == 0 {
			return b.P(0)
		}
		return strconv.Itoa(printed[rand.Intn(len(printed))])
	}
	stop := make(chan struct{})
	go func() { // the killer
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rand.Intn(8000)) * time.Microsecond):
			}
			mu.Lock()
			for c := range running {
				if rand.Intn(3) == 0 && c.Process != nil {
					c.Process.Signal(syscall.SIGKILL)
					killed.Add(1)
				}
				break
			}
			mu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Add(1) <= int64(ops) {
				switch rand.Intn(3) {
				case 0, 1:
					out, ok := run("allocate", "--service", "chaos", "--range", rg)
					if ok {
						p, err := strconv.Atoi(strings.TrimSpace(out))
						if err != nil {
							t.Errorf("allocate exited 0 printing %q", out)
							continue
						}
						mu.Lock()
						printed = append(printed, p)
						mu.Unlock()
					}
				case 2:
					if rand.Intn(2) == 0 {
						run("register", pick(), "--pid", self, "--service", "chaos")
					} else {
						run("release", pick(), "--force")
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("%d operations, %d SIGKILLs, %d ports printed", ops, killed.Load(), len(printed))

	// One more change after the carnage: it must succeed and clear temp
	// files. Its own range: the chaos range may rightly be full by now.
	if out, ok := run("allocate", "--service", "after", "--range", testPorts(t).String()); !ok {
		t.Fatalf("allocate after chaos failed: %s", out)
	}
	reg := readRegistry(t, root)
	released := map[int]bool{}
	for _, ev := range auditLog(t, root) {
		if ev.Action == "release" {
			released[ev.Port] = true
		}
	}
	for _, p := range printed {
		if reg.Get(p) == nil && !released[p] {
			t.Errorf("port %d was printed by an allocate that exited 0, but is neither in the registry nor released", p)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(root, registry.RegistryDir, ".*tmp-*")); len(m) > 0 {
		t.Errorf("temp files left: %v", m)
	}
	// After one more command that took the lock, the log holds exactly one
	// line for every change the registry reflects.
	checkAuditMatchesRegistry(t, root)
}

// Rounds of 10 concurrent writers, half of them SIGKILLed at a random
// moment (`make chaos`: 80 rounds; `make test`: 20). A kill that lands
// between a writer's rename of the registry and its append to the log must
// cost no audit line: after one more command, the log and the registry
// agree change for change.
func TestAuditSurvivesKill(t *testing.T) {
	b := testenv.Ports(t, 200)
	rounds := envInt("GRACECTL_KILL_ROUNDS", 20)
	root := t.TempDir()
	rg := b.String()
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for w := 0; w < 10; w++ {
			c := gracectlCmd(t, root, "allocate", "--service", "k"+strconv.Itoa(w), "--range", rg)
			if round%2 == 1 && w%2 == 0 {
				c = gracectlCmd(t, root, "release", "--service", "k"+strconv.Itoa(w), "--force")
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if w%2 == 0 {
					time.Sleep(time.Duration(rand.Intn(15000)) * time.Microsecond)
					c.Process.Signal(syscall.SIGKILL)
				}
				c.Wait()
			}()
		}
		wg.Wait()
	}
	c := gracectlCmd(t, root, "allocate", "--service", "after", "--range", testPorts(t).String())
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("allocate after the kills: %v: %s", err, out)
	}
	checkAuditMatchesRegistry(t, root)
}

// mountTmpfs mounts a small tmpfs for a test, or skips when that is not
// allowed (not root, no mount namespace rights).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs; skipped")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); skipped", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A full disk: allocate fails with a clear error; the old registry is
// intact and still readable.
func TestDiskFull(t *testing.T) {
	b := testPorts(t)
	root := mountTmpfs(t, "256k")
	for i := 0; i < 3; i++ {
		if out, err := gracectlCmd(t, root, "allocate", "--service", "before", "--range", b.String()).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	regPath := filepath.Join(root, registry.RegistryDir, registry.RegistryFile)
	before, _ := os.ReadFile(regPath)
	// Fill the file system.
	filler, _ := os.Create(filepath.Join(root, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	out, err := gracectlCmd(t, root, "allocate", "--service", "a-much-longer-service-name-to-need-more-bytes", "--purpose", strings.Repeat("p", 1000), "--range", b.String()).CombinedOutput()
	if err == nil {
		t.Fatalf("allocate succeeded on a full disk: %s", out)
	}
	if !strings.Contains(string(out), "no space left on device: the file system is full") || strings.Count(strings.TrimSpace(string(out)), "\n") > 1 ||
		strings.Contains(string(out), "jsontext") || strings.Contains(string(out), ".tmp-") {
		t.Fatalf("unclear error on a full disk (one line, what happened and what to do, no Go internals):\n%s", out)
	}
	after, _ := os.ReadFile(regPath)
	if string(before) != string(after) {
		t.Fatal("the registry changed on a failed write")
	}
	if out, err := gracectlCmd(t, root, "status", "--json", "--range", b.String()).Output(); err != nil || !strings.Contains(string(out), `"allocated": 3`) {
		t.Fatalf("status after disk full: %v %s", err, out)
	}
}

// A read-only root: a clear error, nothing changed; reading still works.
func TestReadOnlyRoot(t *testing.T) {
	b := testPorts(t)
	root := mountTmpfs(t, "1m")
	if out, err := gracectlCmd(t, root, "allocate", "--service", "before", "--range", b.String()).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", root).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only: %v %s", err, out)
	}
	regPath := filepath.Join(root, registry.RegistryDir, registry.RegistryFile)
	before, _ := os.ReadFile(regPath)
	out, err := gracectlCmd(t, root, "allocate", "--service", "x", "--range", b.String()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "read-only file system") {
		t.Fatalf("allocate on a read-only root: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(regPath)
	if string(before) != string(after) {
		t.Fatal("registry changed")
	}
	if out, err := gracectlCmd(t, root, "status", "--json", "--range", b.String()).Output(); err != nil || !strings.Contains(string(out), `"allocated": 1`) {
		t.Fatalf("status on a read-only root: %v %s", err, out)
	}
}

// Hostile strings in a command line are stored safely: each log line stays
// one whole JSON object, and nothing raw reaches the terminal.
func TestHostileCommandLine(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	evil := "x\n{\"action\":\"forged\"}\x1b[2J\x00"
	evil = strings.ReplaceAll(evil, "\x00", "") // argv cannot carry NUL
	out, err := gracectlCmd(t, root, "run", "-q", "--range", b.String(), "--", "sh", "-c", "exit 0", evil).CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	events := auditLog(t, root)
	if len(events) != 3 {
		t.Fatalf("want allocate, register, release lines; got %d: %+v", len(events), events)
	}
	for _, ev := range events {
		if ev.Action == "forged" {
			t.Fatalf("bad line %q", ev.Line)
		}
		if strings.ContainsRune(ev.Line, 0x1b) {
			t.Fatal("raw ESC in the log")
		}
	}
}

// Permission denied: another user may read the registry, but a change fails
// with a clear error and nothing changes.
func TestPermissionDenied(t *testing.T) {
	b := testPorts(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run gracectl as another user; skipped")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed; skipped")
	}
	base, err := os.MkdirTemp("", "gracectl-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	self, _ := exec.LookPath("gracectl")
	bin := filepath.Join(base, "gracectl")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	os.Mkdir(root, 0o755)
	if out, err := gracectlCmd(t, root, "allocate", "--service", "rootsvc", "--range", b.String()).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	regPath := filepath.Join(root, registry.RegistryDir, registry.RegistryFile)
	before, _ := os.ReadFile(regPath)
	asNobody := func(args ...string) *exec.Cmd {
		c := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		c.Env = append(os.Environ(), "GRACECTL_ROOT="+root, "GRACECTL_WATCHDOG=off")
		return c
	}
	out, err := asNobody("allocate", "--service", "intruder", "--range", b.String()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "you (nobody) may not") || strings.Contains(string(out), "permission denied") || strings.Count(strings.TrimSpace(string(out)), "\n") > 1 {
		t.Fatalf("allocate as another user: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(regPath)
	if string(before) != string(after) {
		t.Fatal("registry changed")
	}
	out, err = asNobody("status", "--json", "--range", b.String()).Output()
	if err != nil || !strings.Contains(string(out), `"allocated": 1`) {
		t.Fatalf("status as another user: %v\n%s", err, out)
	}
}

// No live owner's port is ever released: owners in a PID namespace of
// their own (as root), services that daemonize, and services that bind
// seconds after they start, while `watch` cycles every 200 ms and other
// processes allocate, release and check around them (GRACECTL_CHAOS_OPS
// operations: 150 in `make test`, 1,000 in `make chaos`).
func TestNoFalseRelease(t *testing.T) {
	b := testenv.Ports(t, 30)
	ops := envInt("GRACECTL_CHAOS_OPS", 150)
	root := t.TempDir()
	keep, churn := b.Sub(0, 9), b.Sub(10, 29)
	w := startGracectl(t, root, "watch", "--interval", "200ms", "--range", b.String())
	waitFor(t, "the watchdog's first cycle", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Health check:")
	})
	daemon := `
import os, socket, time
if os.fork() == 0:
    os.setsid()
    time.sleep(1)
    s = socket.socket()
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen()
    time.sleep(600)
`
	slow := `
import os, socket, time
time.sleep(1.5)
s = socket.socket()
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
time.sleep(600)
`
	var long []*started
	for _, script := range []string{daemon, daemon, slow, slow} {
		long = append(long, startGracectl(t, root, "run", "--quiet", "--range", keep, "--", "python3", "-c", script))
	}
	want := len(long)
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("unshare"); err == nil {
			for i := 0; i < 2; i++ {
				startInNamespaces(t, root, keep, "--pid")
			}
			want += 2
		}
	}
	var ports []int
	defer func() {
		if t.Failed() {
			for _, a := range readRegistry(t, root).Sorted() {
				t.Logf("port %d: %s pid %d %s listening %v", a.Port, a.ServiceName, a.PID, a.HealthStatus, probeListening(a.Port))
			}
			for _, s := range long {
				t.Logf("run: %s", s.out.String())
			}
		}
	}()
	waitFor(t, "every long-lived service to listen on its port", 120*time.Second, func() bool {
		ports = ports[:0]
		for _, a := range readRegistry(t, root).Allocations {
			if parseRange(t, keep).Contains(a.Port) && probeListening(a.Port) {
				ports = append(ports, a.Port)
			}
		}
		return len(ports) == want
	})
	var wg sync.WaitGroup
	var done atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := done.Add(1); n <= int64(ops); n = done.Add(1) {
				switch rand.Intn(4) {
				case 0, 1:
					gracectlCmd(t, root, "allocate", "--service", "churn", "--range", churn).Run()
				case 2:
					gracectlCmd(t, root, "release", "--service", "churn", "--force").Run()
				case 3:
					gracectlCmd(t, root, "check", "--range", b.String()).Run()
				}
			}
		}()
	}
	wg.Wait()
	reg := readRegistry(t, root)
	for _, p := range ports {
		if reg.Get(p) == nil {
			t.Errorf("port %d of a live service was released", p)
		}
	}
	for _, ev := range auditLog(t, root) {
		for _, p := range ports {
			if ev.Action == "release" && ev.Port == p {
				t.Errorf("release line for the live service's port %d: %s", p, ev.Line)
			}
		}
	}
	// SIGTERM reaches the daemons through run, which waits for them.
	for _, s := range long {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range long {
		s.wait(t, 60*time.Second)
	}
}

func parseRange(t *testing.T, s string) registry.Range {
	t.Helper()
	r, err := registry.ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
