package cmd_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// testOwn is what a test's gracectl processes get unless told otherwise.
type testOwn struct {
	ports testenv.Block
	host  string
}

var (
	ownsMu sync.Mutex
	owns   = map[*testing.T]*testOwn{}
)

func ownOf(t *testing.T) *testOwn {
	t.Helper()
	ownsMu.Lock()
	defer ownsMu.Unlock()
	if o := owns[t]; o != nil {
		return o
	}
	o := &testOwn{ports: testenv.Ports(t, 10), host: t.TempDir()}
	owns[t] = o
	t.Cleanup(func() {
		ownsMu.Lock()
		delete(owns, t)
		ownsMu.Unlock()
	})
	return o
}

// testPorts is t's own block of ten ports, taken on first use: the
// default range of every gracectl the test starts. A test that needs more
// takes a block of its own with testenv.Ports.
func testPorts(t *testing.T) testenv.Block { return ownOf(t).ports }

// gracectlCmd runs the gracectl that testscript.Main put on PATH (this
// test binary, re-executed as a real process) against root. Its default
// range is the test's own (testPorts), its host registry a temp folder, and
// it is tagged as the test's (testenv.Tag): killed when the test ends, if
// it has not ended, with whatever it started.
func gracectlCmd(t *testing.T, root string, args ...string) *exec.Cmd {
	t.Helper()
	own := ownOf(t)
	c := exec.Command("gracectl", args...)
	// No background watchdog from run, unless a test asks for one.
	c.Env = append(os.Environ(), testenv.Tag(t), "GRACECTL_ROOT="+root, "GRACECTL_HOST_ROOT="+own.host,
		"GRACECTL_RANGE="+own.ports.String(), "GRACECTL_LOCK_TIMEOUT=60s", "GRACECTL_WATCHDOG=off")
	return c
}

// 50 real processes started together get 50 distinct ports, all in the
// registry and all in the log. flock is per open file, so only separate
// processes prove this.
func TestConcurrentAllocateProcesses(t *testing.T) {
	b := testenv.Ports(t, 100)
	const n = 50
	root := t.TempDir()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = gracectlCmd(t, root, "allocate", "--service", "svc"+strconv.Itoa(i), "--range", b.String())
		outs[i] = new(bytes.Buffer)
		cmds[i].Stdout = outs[i]
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = c.Run()
		}()
	}
	close(start)
	wg.Wait()
	seen := map[int]int{}
	for i := range cmds {
		if errs[i] != nil {
			t.Fatalf("process %d: %v: %s", i, errs[i], outs[i])
		}
		port, err := strconv.Atoi(strings.TrimSpace(outs[i].String()))
		if err != nil {
			t.Fatalf("process %d printed %q", i, outs[i])
		}
		if j, dup := seen[port]; dup {
			t.Fatalf("port %d handed to process %d and %d", port, j, i)
		}
		seen[port] = i
	}
	data, err := os.ReadFile(filepath.Join(root, registry.RegistryDir, registry.RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Allocations) != n {
		t.Fatalf("registry has %d allocations, want %d", len(r.Allocations), n)
	}
	for port, i := range seen {
		a := r.Get(port)
		if a == nil || a.ServiceName != "svc"+strconv.Itoa(i) {
			t.Fatalf("port %d: registry has %+v, want svc%d", port, a, i)
		}
	}
	logged := map[int]bool{}
	for _, ev := range auditLog(t, root) {
		if ev.Action == "allocate" {
			if logged[ev.Port] {
				t.Fatalf("port %d logged twice", ev.Port)
			}
			logged[ev.Port] = true
		}
	}
	if len(logged) != n {
		t.Fatalf("log has %d allocate lines, want %d", len(logged), n)
	}
}
