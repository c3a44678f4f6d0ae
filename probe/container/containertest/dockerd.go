package containertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

// Dockerd is a dockerd of a test's own, in a network namespace of its own.
type Dockerd struct {
	Sock  string // its API socket
	PID   int    // dockerd's, in this PID namespace
	NetNS string // its network namespace: /proc/PID/ns/net
	Image string // the busybox image, imported into it
}

// NATDockerd starts a dockerd with its userland proxy off
// (--userland-proxy=false): a published port is then the engine's NAT
// rules, and no docker-proxy. It runs in a network namespace of its own
// (its iptables rules, bridge and ports apart from the host's and from
// any other dockerd), with its data, exec root, pid file and socket in a
// temp folder, and the busybox image imported. Its containers are removed
// and it is stopped in t's cleanup. t skips, saying why, where that cannot
// be done: not root, no unshare, nsenter or ip, or a dockerd that does not
// start or cannot run a container here.
func NATDockerd(t testing.TB) *Dockerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a dockerd of the test's own needs root")
	}
	for _, tool := range []string{"dockerd", "docker", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("a dockerd of the test's own needs %s", tool)
		}
	}
	if _, err := staticBusybox(); err != nil {
		t.Skip(err)
	}
	// Short paths: containerd's sockets go under the exec root, and a unix
	// socket's path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "gracectl-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Sock: filepath.Join(dir, "docker.sock")}
	pidfile := filepath.Join(dir, "pid")
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	c := exec.Command("unshare", "--net", "--fork", "--kill-child=SIGTERM", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		"dockerd", "--userland-proxy=false", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", pidfile, "-H", "unix://"+d.Sock)
	c.Stdout, c.Stderr = log, log
	c.SysProcAttr = daemonAttr()
	if err := c.Start(); err != nil {
		os.RemoveAll(dir)
		t.Skipf("unshare --net cannot start: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	t.Cleanup(func() {
		if d.PID > 0 {
			if ids, err := d.Command("ps", "-aq").Output(); err == nil {
				for _, id := range strings.Fields(string(ids)) {
					_ = d.Command("rm", "-f", id).Run()
				}
			}
			_ = syscall.Kill(d.PID, syscall.SIGTERM)
		} else {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		}
		waitOrKill(c.Process.Pid, done, 30*time.Second)
		// dockerd unmounted its layers as it stopped; what it could not
		// is left, rather than removed through.
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("the test dockerd's folder %s stays: %v", dir, err)
		}
	})
	logTail := func() string {
		b, _ := os.ReadFile(log.Name())
		return lastLine(b)
	}
	deadline := time.Now().Add(testenv.Scale(60 * time.Second))
	for d.Command("version").Run() != nil {
		select {
		case <-done:
			t.Skipf("a dockerd with --userland-proxy=false in its own network namespace exited at once: %s", logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test dockerd did not answer in time: %s", logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(pidfile)
	if d.PID, _ = strconv.Atoi(strings.TrimSpace(string(b))); err != nil || d.PID <= 0 {
		t.Fatalf("the test dockerd's pid file: %q, %v", b, err)
	}
	d.NetNS = fmt.Sprintf("/proc/%d/ns/net", d.PID)
	if d.Image, err = importImage("docker", d.Env()); err != nil {
		t.Skipf("the test dockerd cannot run containers here: %v", err)
	}
	return d
}

// Env is what points the docker client, and gracectl, at the daemon.
func (d *Dockerd) Env() []string { return []string{"DOCKER_HOST=unix://" + d.Sock} }

// Command is a docker client command for the daemon.
func (d *Dockerd) Command(args ...string) *exec.Cmd {
	c := exec.Command("docker", args...)
	c.Env = append(os.Environ(), d.Env()...)
	return c
}

// Start starts a detached container on the daemon and returns its ID.
func (d *Dockerd) Start(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Command(append([]string{"run", "-d"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run -d %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// InNetNS makes c, not yet started, run in the daemon's network namespace
// (through nsenter), where its published ports are.
func (d *Dockerd) InNetNS(c *exec.Cmd) {
	nsenter, _ := exec.LookPath("nsenter")
	c.Args = append([]string{"nsenter", "--net=" + d.NetNS, "--", c.Path}, c.Args[1:]...)
	c.Path = nsenter
}
