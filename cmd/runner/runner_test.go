package runner

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Ports: each test takes its own from testenv.Ports.

func newLaunchForTest(t *testing.T, port int, argv ...string) *launch {
	t.Helper()
	store := registry.Open(t.TempDir(), 5*time.Second)
	l, err := newLaunch(context.Background(), Config{
		Store:   store,
		Request: registry.Request{Service: "svc", Range: registry.Range{Start: port, End: port}},
		Argv:    argv,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func auditLog(t *testing.T, l *launch) string {
	t.Helper()
	b, err := os.ReadFile(registry.LogPath(l.cfg.Store.LogDir(), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A run stopped after allocate, before anything started, releases its port
// in cleanup, with the reason the failed step gave.
func TestCleanupReleasesAfterAFailedStep(t *testing.T) {
	l := newLaunchForTest(t, testenv.Ports(t, 1).Port(0), "true")
	if err := l.allocate(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.reason = "command could not be started"
	l.cleanup()
	r, err := l.cfg.Store.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Allocations) != 0 {
		t.Fatalf("port still allocated: %+v", r.Allocations)
	}
	if log := auditLog(t, l); !strings.Contains(log, `"reason":"command could not be started"`) {
		t.Fatalf("release not logged with its reason:\n%s", log)
	}
}

// The child exits while its port still listens (here the test process holds
// it): settle hands the allocation to the listener and cleanup keeps it.
func TestSettleHandsAListeningPortOn(t *testing.T) {
	port := testenv.Ports(t, 1).Port(0)
	l := newLaunchForTest(t, port, "true")
	ctx := context.Background()
	if err := l.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
	l.register()
	if code := l.supervise(); code != 0 {
		t.Fatalf("true exited %d", code)
	}
	l.settle(0)
	l.cleanup()
	r, err := l.cfg.Store.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Get(port)
	if a == nil {
		t.Fatal("a port still listening was released")
	}
	if int(a.PID) != os.Getpid() {
		t.Fatalf("owner is pid %d, want the listener %d", a.PID, os.Getpid())
	}
}

// A child that exits with nothing listening: settle leaves the release to
// cleanup, which logs the exit status.
func TestSettleReleasesWhenNothingListens(t *testing.T) {
	l := newLaunchForTest(t, testenv.Ports(t, 1).Port(0), "sh", "-c", "exit 3")
	ctx := context.Background()
	if err := l.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
	l.register()
	code := l.supervise()
	if code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	l.settle(code)
	l.cleanup()
	if log := auditLog(t, l); !strings.Contains(log, `"reason":"service exited with status 3"`) {
		t.Fatalf("release not logged:\n%s", log)
	}
}
