package container_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/probe/container/containertest"
	"github.com/gracectl/gracectl/registry/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	containertest.Remove()
	os.Exit(code)
}

// A socket served by another user is not believed: what it says about
// containers could be anything. Its own user may ask it.
func TestEngineServedByAnotherUserIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to serve a socket as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	// The system's python3, which nobody may run (not a shim under /root).
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	// Not under t.TempDir(), whose parent only root may enter.
	dir, err := os.MkdirTemp("", "gracectl-engine-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	sock := filepath.Join(dir, "engine.sock")
	// A process of nobody's that answers as an engine would.
	srv := exec.Command("setpriv", "--reuid="+nobody.Uid, "--regid="+nobody.Gid, "--clear-groups", py, "-c", `
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    server_version = "Docker/0.0"
    sys_version = ""
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"OK")
    def address_string(self): return "unix"
    def log_message(self, *a): pass
socketserver.UnixStreamServer(sys.argv[1], H).serve_forever()
`, sock)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	// Until it accepts: the socket's file exists between bind and listen.
	testenv.WaitFor(t, "the server to accept on its socket", 20*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	e := &container.Engines{DockerHost: "unix://" + sock}
	ctx := context.Background()
	if _, err := e.State(ctx, container.Info{ID: "x", Socket: sock}, 0); !errors.Is(err, container.ErrUntrusted) {
		t.Fatalf("root asked nobody's engine: %v, want it refused", err)
	}
	engines, _ := e.For(ctx, 0)
	for _, g := range engines {
		if g.Socket == sock {
			t.Fatal("nobody's engine is among root's")
		}
	}
	got, err := e.For(ctx, uid)
	if err != nil || len(got) == 0 || got[0].Socket != sock || got[0].UID != uid || got[0].Kind != "docker" {
		t.Fatalf("nobody's engine for nobody: %+v, %v", got, err)
	}
}

// Against the real dockerd: a container is found by ID, its published port
// by its proxy, its events followed, and it is stopped as docker stop
// stops it; once removed the engine says so.
func TestDockerEngine(t *testing.T) { testEngine(t, "docker", "") }

// The same through Podman's Docker-compatible API (its service, started
// here), with conmon holding the port.
func TestPodmanEngine(t *testing.T) {
	containertest.Image(t, "podman")
	testEngine(t, "podman", containertest.PodmanService(t))
}

func testEngine(t *testing.T, engine, sock string) {
	img := containertest.Image(t, engine)
	port := testenv.Ports(t, 1).Port(0)
	e := &container.Engines{}
	if sock != "" {
		e.DockerHost = "unix://" + sock
	}
	defer e.Close()
	ctx := context.Background()
	id := containertest.Start(t, engine, "--stop-timeout", "1", "-p", "127.0.0.1:"+strconv.Itoa(port)+":8080", img,
		containertest.Busybox, "httpd", "-f", "-p", "8080", "-h", "/bin")
	st, err := e.Find(ctx, engine, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	pid := containertest.MainPID(t, engine, id)
	if !st.Exists || !st.Running || st.ID != id || strconv.Itoa(st.PID) != pid || st.Engine != engine || !st.Publishes(port) || st.Socket == "" {
		t.Fatalf("found %+v; main pid %s", st, pid)
	}
	// The port's listener is the engine's proxy, and names the container.
	var proxy int
	waitFor(t, "the engine's proxy on the port", func() bool {
		pids := probe.TakeSnapshot().Owners(port)
		if len(pids) > 0 {
			proxy = pids[0]
		}
		return proxy > 0
	})
	in := e.Lookup().Publisher(ctx, port, proxy)
	if in == nil || in.ID != id || in.Socket != st.Socket {
		t.Fatalf("publisher of %d through pid %d (%s): %+v", port, proxy, probe.ProcessName(proxy), in)
	}
	if e.Lookup().Publisher(ctx, port, os.Getpid()) != nil {
		t.Fatal("a process that is no proxy was asked about")
	}
	var mu sync.Mutex
	var seen []string
	fctx, stop := context.WithCancel(ctx)
	opened := make(chan struct{})
	followed := make(chan error, 1)
	go func() {
		followed <- e.Follow(fctx, st.Info, 0, func(string) { close(opened) }, func(ev container.Event) {
			if ev.ID == id {
				mu.Lock()
				seen = append(seen, ev.Action)
				mu.Unlock()
			}
		})
	}()
	defer func() { stop(); <-followed }()
	<-opened
	if err := e.Stop(ctx, st.Info, 0); err != nil {
		t.Fatal(err)
	}
	after, err := e.State(ctx, st.Info, 0)
	if err != nil || !after.Exists || after.Running || after.PID != 0 {
		t.Fatalf("after stop: %+v, %v", after, err)
	}
	containertest.RemoveContainer(engine, id)
	waitFor(t, "the die and remove events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, "die") && slices.Contains(seen, "destroy") || slices.Contains(seen, "remove")
	})
	if gone, err := e.State(ctx, st.Info, 0); err != nil || gone.Exists {
		t.Fatalf("after removal: %+v, %v", gone, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 30*time.Second, cond)
}
