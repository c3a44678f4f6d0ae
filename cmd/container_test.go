package cmd_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe/container/containertest"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// Containers as owners, against the real engines (Debian's docker.io, and
// Podman where it runs): they skip, saying so, where no engine can run a
// container. Each test takes its ports from testPorts.

// gracectlJSON runs a gracectl command with --json in root and decodes its
// output into v; it returns the exit code.
func gracectlJSON(t *testing.T, root string, env []string, v any, args ...string) int {
	t.Helper()
	c := gracectlCmd(t, root, append(args, "--json")...)
	c.Env = append(c.Env, env...)
	return runJSON(t, c, v, args)
}

// runJSON runs c, a gracectl command with --json, and decodes its output
// into v; it returns the exit code.
func runJSON(t *testing.T, c *exec.Cmd, v any, args []string) int {
	t.Helper()
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("gracectl %s: not JSON (%v): %s\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return code
}

// checkReport is what the tests look at in `check --json`.
type checkReport struct {
	Issues  int `json:"issues"`
	Results []struct {
		Port      int    `json:"port"`
		PID       int    `json:"pid"`
		Status    string `json:"health_status"`
		Issue     string `json:"issue"`
		Health    string `json:"health"`
		Container *struct {
			ID, Name, Image, Engine string
		} `json:"container"`
	} `json:"results"`
	Unmanaged []struct {
		Port      int  `json:"port"`
		NAT       bool `json:"nat"`
		Container *struct {
			ID, Name, Image, Engine string
		} `json:"container"`
	} `json:"unmanaged"`
}

// ownedByContainer waits until port is owned by a container and returns
// the allocation.
func ownedByContainer(t *testing.T, root string, port int) *registry.Allocation {
	t.Helper()
	var a *registry.Allocation
	waitFor(t, fmt.Sprintf("a container to own port %d", port), 60*time.Second, func() bool {
		a = readRegistry(t, root).Get(port)
		return a != nil && a.Container != nil && a.PID > 0
	})
	return a
}

// httpdArgs serve busybox's own folder on 8080 in the container.
func httpdArgs(img string) []string {
	return []string{img, containertest.Busybox, "httpd", "-f", "-p", "8080", "-h", "/bin"}
}

// gracectl run -- docker run: the container owns the port (its ID, name and
// main process), check sees no issue and names it, and SIGTERM to run stops
// the container as docker stop does — with its own stop signal (here
// SIGUSR1, which it traps and exits 3 on: as PID 1 it would ignore SIGTERM)
// — and then releases the port.
func TestContainerRunOwnsPortAndStopsOnSIGTERM(t *testing.T) {
	img := containertest.Image(t, "docker")
	root := t.TempDir()
	p := testPorts(t)
	port := p.Port(0)
	script := "trap 'exit 3' USR1; /bin/busybox httpd -p 8080 -h /bin; while :; do /bin/busybox sleep 1; done"
	g := startGracectl(t, root, "run", "--service", "cweb", "--health-path", "/busybox", "--",
		"docker", "run", "--rm", "--stop-signal", "USR1", "--stop-timeout", "60", "-p", "127.0.0.1:{port}:8080", img,
		containertest.Busybox, "sh", "-c", script)
	a := ownedByContainer(t, root, port)
	id := a.Container.ID
	t.Cleanup(func() { containertest.RemoveContainer("docker", id) })
	if main := containertest.MainPID(t, "docker", id); strconv.Itoa(int(a.PID)) != main || a.Container.Name == "" || a.Container.Engine != "docker" || a.Container.UntilRemoved {
		t.Fatalf("allocation %+v, container %+v; main pid %s", a, a.Container, main)
	}
	var rep checkReport
	waitFor(t, "a healthy check", 30*time.Second, func() bool {
		code := gracectlJSON(t, root, nil, &rep, "check")
		return code == 0 && len(rep.Results) == 1 && rep.Results[0].Health == "ok"
	})
	if r := rep.Results[0]; rep.Issues != 0 || r.Issue != "" || r.Container == nil || r.Container.ID != id || r.Status != registry.StatusActive {
		t.Fatalf("check: %+v", rep)
	}
	var who struct {
		Listeners []struct {
			Command   string
			Container *struct{ ID string }
		}
	}
	gracectlJSON(t, root, nil, &who, "who", strconv.Itoa(port))
	if len(who.Listeners) == 0 || who.Listeners[0].Container == nil || who.Listeners[0].Container.ID != id {
		t.Fatalf("who: %+v", who)
	}
	var st struct {
		Allocations []struct{ Container *struct{ ID, Name string } }
	}
	gracectlJSON(t, root, nil, &st, "status")
	if len(st.Allocations) != 1 || st.Allocations[0].Container == nil || st.Allocations[0].Container.ID != id {
		t.Fatalf("status: %+v", st)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	if code := g.wait(t, 60*time.Second); code != 3 {
		t.Fatalf("run exited %d, want the container's 3 (its stop signal trapped); output:\n%s", code, g.out)
	}
	containertest.WaitGone(t, "docker", id, 30*time.Second)
	if readRegistry(t, root).Get(port) != nil || probeListening(port) {
		t.Fatal("port not released after the container stopped")
	}
	if !strings.Contains(g.out.String(), "stopping container") {
		t.Errorf("run did not say it stops the container:\n%s", g.out)
	}
	checkAuditMatchesRegistry(t, root)
}

// A container killed under gracectl run: run sees its client exit and
// releases the port once the engine no longer publishes it. A detached
// container killed while the watchdog follows the engine's events: the
// watchdog releases it long before its next cycle (an hour away).
func TestContainerKilledIsReleased(t *testing.T) {
	img := containertest.Image(t, "docker")
	root := t.TempDir()
	p := testPorts(t)
	g := startGracectl(t, root, append([]string{"run", "--range", p.Sub(0, 1), "--service", "fg", "--",
		"docker", "run", "--rm", "-p", "127.0.0.1:{port}:8080"}, httpdArgs(img)...)...)
	a := ownedByContainer(t, root, p.Port(0))
	t.Cleanup(func() { containertest.RemoveContainer("docker", a.Container.ID) })
	containertest.Engine(t, "docker", "kill", a.Container.ID)
	killed := time.Now()
	if code := g.wait(t, 60*time.Second); code != 137 {
		t.Fatalf("run exited %d, want 137 (SIGKILL); output:\n%s", code, g.out)
	}
	if readRegistry(t, root).Get(p.Port(0)) != nil {
		t.Fatal("port not released after the container was killed")
	}
	t.Logf("killed container under run: released %s after docker kill returned", time.Since(killed).Round(time.Millisecond))

	w := startGracectl(t, root, "watch", "--range", p.Sub(2, 9), "--interval", "1h")
	waitFor(t, "the watchdog's first cycle", 30*time.Second, func() bool { return strings.Contains(w.out.String(), "Health check:") })
	run := gracectlCmd(t, root, append([]string{"run", "--range", p.Sub(2, 9), "--service", "bg", "--",
		"docker", "run", "-d", "--rm", "-p", "127.0.0.1:{port}:8080"}, httpdArgs(img)...)...)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("run -- docker run -d: %v\n%s", err, out)
	}
	b := ownedByContainer(t, root, p.Port(2))
	t.Cleanup(func() { containertest.RemoveContainer("docker", b.Container.ID) })
	if !b.Container.UntilRemoved {
		t.Fatalf("a detached container's port is not kept for it: %+v", b.Container)
	}
	waitFor(t, "the watchdog to follow the engine's events", 30*time.Second, func() bool {
		return strings.Contains(w.out.String(), "Following container events (docker")
	})
	containertest.Engine(t, "docker", "kill", b.Container.ID)
	killed = time.Now()
	waitFor(t, "the watchdog to release the killed container's port", 30*time.Second, func() bool {
		return readRegistry(t, root).Get(p.Port(2)) == nil
	})
	t.Logf("killed detached --rm container, watchdog following events: released %s after docker kill returned", time.Since(killed).Round(time.Millisecond))
	if !strings.Contains(w.out.String(), "Port "+p.P(2)+" (bg): dead (container gone: container ") {
		t.Errorf("watchdog log:\n%s", w.out)
	}
	checkAuditMatchesRegistry(t, root)
}

// A container published outside gracectl: an unmanaged listener that names
// the container; adopted, the container owns the port (kept while it is
// stopped, moved to its new main process when started again, released when
// it is removed).
func TestContainerUnmanagedNamedThenAdopted(t *testing.T) {
	img := containertest.Image(t, "docker")
	root := t.TempDir()
	p := testPorts(t)
	port := p.Port(0)
	name := fmt.Sprintf("gracectl-test-adopt-%d", os.Getpid())
	id := containertest.Start(t, "docker", append([]string{"--name", name, "-p", p.Addr(0) + ":8080"}, httpdArgs(img)...)...)
	rg := p.String()
	var rep checkReport
	if code := gracectlJSON(t, root, nil, &rep, "check", "--range", rg); code != 1 || len(rep.Unmanaged) != 1 {
		t.Fatalf("check: exit %d, %+v", code, rep)
	}
	if u := rep.Unmanaged[0]; u.Port != port || u.Container == nil || u.Container.ID != id || u.Container.Name != name || u.Container.Image != img {
		t.Fatalf("unmanaged listener not named: %+v", rep.Unmanaged[0])
	}
	out, _ := gracectlCmd(t, root, "check", "--range", rg).CombinedOutput()
	if want := fmt.Sprintf("served by container %s (%s) through pid", name, img); !strings.Contains(string(out), want) {
		t.Fatalf("check does not say %q:\n%s", want, out)
	}
	var a registry.Allocation
	if code := gracectlJSON(t, root, nil, &a, "adopt", strconv.Itoa(port), "--range", rg); code != 0 {
		t.Fatalf("adopt exited %d", code)
	}
	if a.Container == nil || a.Container.ID != id || !a.Container.UntilRemoved || a.ServiceName != name || strconv.Itoa(int(a.PID)) != containertest.MainPID(t, "docker", id) {
		t.Fatalf("adopted: %+v %+v", a, a.Container)
	}
	if code := gracectlJSON(t, root, nil, &rep, "check", "--range", rg); code != 0 || rep.Results[0].Status != registry.StatusActive {
		t.Fatalf("check after adopt: exit %d, %+v", code, rep)
	}
	containertest.Engine(t, "docker", "stop", "-t", "0", id)
	if code := gracectlJSON(t, root, nil, &rep, "check", "--range", rg); code != 0 || rep.Results[0].Status != registry.StatusReserved {
		t.Fatalf("check with the container stopped: exit %d, %+v", code, rep)
	}
	if k := readRegistry(t, root).Get(port); k == nil || k.PID != 0 || k.Container == nil {
		t.Fatalf("a stopped container's port is not kept for it: %+v", k)
	}
	containertest.Engine(t, "docker", "start", id)
	main := containertest.MainPID(t, "docker", id)
	if code := gracectlJSON(t, root, nil, &rep, "check", "--range", rg); code != 0 || strconv.Itoa(rep.Results[0].PID) != main {
		t.Fatalf("check with the container started again (main pid %s): exit %d, %+v", main, code, rep)
	}
	containertest.RemoveContainer("docker", id)
	gracectlJSON(t, root, nil, &rep, "check", "--range", rg)
	if readRegistry(t, root).Get(port) != nil {
		t.Fatalf("a removed container's port is still allocated: %+v", rep)
	}
	checkAuditMatchesRegistry(t, root)
}

// gracectl run -- docker run -d: run exits with the client, and the port
// stays the container's until the container is removed.
func TestContainerRunDetachedKeepsPort(t *testing.T) {
	img := containertest.Image(t, "docker")
	root := t.TempDir()
	p := testPorts(t)
	out, err := gracectlCmd(t, root, append([]string{"run", "--",
		"docker", "run", "-d", "--name", fmt.Sprintf("gracectl-test-detached-%d", os.Getpid()), "-p", "127.0.0.1:{port}:8080"}, httpdArgs(img)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	a := readRegistry(t, root).Get(p.Port(0))
	if a == nil || a.Container == nil || !a.Container.UntilRemoved || a.ServiceName != fmt.Sprintf("gracectl-test-detached-%d", os.Getpid()) {
		t.Fatalf("after run -d: %+v\n%s", a, out)
	}
	t.Cleanup(func() { containertest.RemoveContainer("docker", a.Container.ID) })
	if !strings.Contains(string(out), "it is released once the container is removed") {
		t.Errorf("run did not say the port stays:\n%s", out)
	}
	var rep checkReport
	if code := gracectlJSON(t, root, nil, &rep, "check"); code != 0 || rep.Results[0].Status != registry.StatusActive {
		t.Fatalf("check: exit %d, %+v", code, rep)
	}
	containertest.RemoveContainer("docker", a.Container.ID)
	gracectlJSON(t, root, nil, &rep, "check")
	if readRegistry(t, root).Get(p.Port(0)) != nil {
		t.Fatalf("the removed container's port is still allocated: %+v", rep)
	}
}

// The same with Podman, through its Docker-compatible API (its service,
// named by DOCKER_HOST): conmon holds the published port.
func TestPodmanRunAndUnmanaged(t *testing.T) {
	img := containertest.Image(t, "podman")
	sock := containertest.PodmanService(t)
	env := []string{"DOCKER_HOST=unix://" + sock}
	root := t.TempDir()
	p := testPorts(t)
	args := append([]string{"run", "--range", p.Sub(0, 1), "--", "podman", "run", "--rm", "--stop-timeout", "1"}, containertest.RunFlags("podman")...)
	g := startGracectlEnv(t, root, env, append(append(args, "-p", "127.0.0.1:{port}:8080"), httpdArgs(img)...)...)
	a := ownedByContainer(t, root, p.Port(0))
	t.Cleanup(func() { containertest.RemoveContainer("podman", a.Container.ID) })
	if a.Container.Engine != "podman" || a.Container.Socket != sock {
		t.Fatalf("container %+v", a.Container)
	}
	var rep checkReport
	if code := gracectlJSON(t, root, env, &rep, "check"); code != 0 || rep.Results[0].Container == nil {
		t.Fatalf("check: exit %d, %+v", code, rep)
	}
	other := containertest.Start(t, "podman", append([]string{"-p", p.Addr(5) + ":8080"}, httpdArgs(img)...)...)
	if gracectlJSON(t, root, env, &rep, "check"); len(rep.Unmanaged) != 1 || rep.Unmanaged[0].Container == nil || rep.Unmanaged[0].Container.ID != other {
		t.Fatalf("the unmanaged podman container is not named: %+v", rep)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	if code := g.wait(t, 60*time.Second); code != 137 {
		t.Fatalf("run exited %d, want 137 (busybox ignores SIGTERM; killed after its stop timeout); output:\n%s", code, g.out)
	}
	if readRegistry(t, root).Get(p.Port(0)) != nil {
		t.Fatal("port not released")
	}
	// Detached: run exits with the client, though conmon, which the client
	// leaves running, would have been its to wait for as a subreaper.
	name := fmt.Sprintf("gracectl-test-podman-detached-%d", os.Getpid())
	t.Cleanup(func() { containertest.RemoveContainer("podman", name) })
	args = append([]string{"run", "--range", p.Sub(2, 3), "--", "podman", "run", "-d", "--name", name}, containertest.RunFlags("podman")...)
	dg := startGracectlEnv(t, root, env, append(append(args, "-p", "127.0.0.1:{port}:8080"), httpdArgs(img)...)...)
	if code := dg.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("run -- podman run -d exited %d:\n%s", code, dg.out)
	}
	d := readRegistry(t, root).Get(p.Port(2))
	if d == nil || d.Container == nil || !d.Container.UntilRemoved || d.PID <= 0 {
		t.Fatalf("after run -- podman run -d: %+v\n%s", d, dg.out)
	}
}

// A port published through NAT alone, with no process listening on it, is
// still its container's. The engine is a dockerd of the test's own with
// its userland proxy off, in a network namespace of its own, where the
// gracectl commands run too. That dockerd holds the port itself (the
// placeholder socket of its port mapper): the listener is dockerd, named
// with the container. Once that socket is gone (destroyed with ss -K, as
// the kernel allows root), the port is NAT rules alone: check, who and
// status --json still name the container, adopt takes it in, and the
// adopted container's port is active with no issue, then released when
// the container is removed.
func TestContainerPublishedThroughNATAlone(t *testing.T) {
	d := containertest.NATDockerd(t)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("needs ss (iproute2), to destroy the engine's placeholder socket")
	}
	root := t.TempDir()
	p := testPorts(t)
	port, rg := p.Port(0), p.String()
	in := func(args ...string) *exec.Cmd {
		c := gracectlCmd(t, root, args...)
		c.Env = append(c.Env, d.Env()...)
		d.InNetNS(c)
		return c
	}
	inJSON := func(v any, args ...string) int { return runJSON(t, in(append(args, "--json")...), v, args) }
	name := fmt.Sprintf("gracectl-test-nat-%d", os.Getpid())
	id := d.Start(t, append([]string{"--name", name, "-p", p.Addr(0) + ":8080"}, httpdArgs(d.Image)...)...)

	var rep checkReport
	if code := inJSON(&rep, "check", "--range", rg); code != 1 || len(rep.Unmanaged) != 1 || rep.Unmanaged[0].Container == nil ||
		rep.Unmanaged[0].Container.ID != id || rep.Unmanaged[0].NAT {
		t.Fatalf("check with dockerd holding the port: exit %d, %+v", code, rep)
	}
	ns := func(args ...string) string {
		out, err := exec.Command("nsenter", append([]string{"--net=" + d.NetNS, "--"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := ns("ss", "-Hltnp", "sport = :"+p.P(0)); !strings.Contains(out, "dockerd") {
		t.Fatalf("the port's listener is not dockerd: %q", out)
	}
	ns("ss", "-K", "-Hltn", "sport = :"+p.P(0))
	if out := ns("ss", "-Hltn", "sport = :"+p.P(0)); out != "" {
		t.Skipf("the kernel did not destroy the listener (ss -K needs CONFIG_INET_DIAG_DESTROY): %q", out)
	}
	if out := ns("/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://"+p.Addr(0)+"/busybox"); out != "" {
		t.Logf("wget: %s", out)
	}

	if code := inJSON(&rep, "check", "--range", rg); code != 1 || len(rep.Unmanaged) != 1 {
		t.Fatalf("check with the port published through NAT alone: exit %d, %+v", code, rep)
	}
	if u := rep.Unmanaged[0]; u.Port != port || !u.NAT || u.Container == nil || u.Container.ID != id || u.Container.Name != name {
		t.Fatalf("the NAT-only port is not named: %+v", u)
	}
	out, _ := in("check", "--range", rg).CombinedOutput()
	if want := fmt.Sprintf("port %d is published by container %s (%s) through NAT rules alone", port, name, d.Image); !strings.Contains(string(out), want) {
		t.Fatalf("check does not say %q:\n%s", want, out)
	}
	var who struct {
		Listeners []struct {
			PID       int
			NAT       bool
			Container *struct{ ID string }
		}
	}
	if code := inJSON(&who, "who", p.P(0)); code != 0 || len(who.Listeners) != 1 || !who.Listeners[0].NAT || who.Listeners[0].Container == nil || who.Listeners[0].Container.ID != id {
		t.Fatalf("who: exit %d, %+v", code, who)
	}
	var st struct {
		Unmanaged []struct {
			Port      int
			NAT       bool
			Container *struct{ ID string }
		}
	}
	if inJSON(&st, "status", "--range", rg); len(st.Unmanaged) != 1 || !st.Unmanaged[0].NAT || st.Unmanaged[0].Container == nil || st.Unmanaged[0].Container.ID != id {
		t.Fatalf("status: %+v", st)
	}
	// Outside its network namespace, the daemon's ports are not this
	// host's: nothing is credited there.
	c := gracectlCmd(t, root, "check", "--range", rg, "--json")
	c.Env = append(c.Env, d.Env()...)
	if runJSON(t, c, &rep, []string{"check"}); len(rep.Unmanaged) != 0 {
		t.Fatalf("another network namespace's port credited: %+v", rep.Unmanaged)
	}

	// allocate does not ask engines: it can hand the port out (it binds),
	// and check then says whose the port really is.
	if out, err := in("allocate", "--service", "squat", "--preferred", p.P(0), "--range", rg).Output(); err != nil || strings.TrimSpace(string(out)) != p.P(0) {
		t.Fatalf("allocate --preferred %d: %v: %s", port, err, out)
	}
	if code := inJSON(&rep, "check", "--range", rg); code != 1 || len(rep.Results) != 1 ||
		!strings.Contains(rep.Results[0].Issue, fmt.Sprintf("port also published by container %s (%s) through NAT rules alone", name, d.Image)) {
		t.Fatalf("check of a reservation on the NAT-only port: exit %d, %+v", code, rep)
	}
	if out, err := in("release", "--service", "squat").CombinedOutput(); err != nil {
		t.Fatalf("release: %v: %s", err, out)
	}

	var a registry.Allocation
	if code := inJSON(&a, "adopt", p.P(0), "--range", rg); code != 0 {
		t.Fatalf("adopt exited %d", code)
	}
	main := d.Command("inspect", "--format", "{{.State.Pid}}", id)
	mainPID, _ := main.Output()
	if a.Container == nil || a.Container.ID != id || !a.Container.UntilRemoved || a.ServiceName != name || strconv.Itoa(int(a.PID)) != strings.TrimSpace(string(mainPID)) {
		t.Fatalf("adopted: %+v %+v (main pid %s)", a, a.Container, mainPID)
	}
	if code := inJSON(&rep, "check", "--range", rg); code != 0 || rep.Issues != 0 || len(rep.Results) != 1 || rep.Results[0].Status != registry.StatusActive {
		t.Fatalf("check after adopt: exit %d, %+v", code, rep)
	}
	if err := d.Command("rm", "-f", id).Run(); err != nil {
		t.Fatal(err)
	}
	inJSON(&rep, "check", "--range", rg)
	if readRegistry(t, root).Get(port) != nil {
		t.Fatalf("a removed container's port is still allocated: %+v", rep)
	}
	checkAuditMatchesRegistry(t, root)
}

// Rootless Podman, as an unprivileged user whose $XDG_RUNTIME_DIR is not
// /run/user/UID: rootlessport holds the published ports. The user's
// `gracectl run -- podman run` makes the container the owner (found on the
// user's own engine socket, in its $XDG_RUNTIME_DIR), and its check sees
// no issue; root's check names another rootless container of the user's
// (its engine found through the listener's $XDG_RUNTIME_DIR) and root
// adopts it; SIGTERM to the user's run stops its container and releases
// the port.
func TestPodmanRootless(t *testing.T) {
	r := containertest.RootlessPodman(t)
	self, err := exec.LookPath("gracectl")
	if err != nil {
		t.Fatal(err)
	}
	bin := r.Install(t, self)
	userRoot, hostRoot := r.Mkdir(t, "registry"), r.Mkdir(t, "host")
	p := testPorts(t)
	asUser := func(args ...string) *exec.Cmd {
		c := r.Command(bin, args...)
		// Its own range and host registry, as every test's: the host's
		// other listeners (8000 of the README's example) and the user's
		// container at p.Port(5), which root adopts, are not its.
		c.Env = append(c.Env, "GRACECTL_ROOT="+userRoot, "GRACECTL_HOST_ROOT="+hostRoot, "GRACECTL_RANGE="+p.Sub(0, 3),
			"GRACECTL_WATCHDOG=off", "GRACECTL_LOCK_TIMEOUT=60s")
		return c
	}
	args := append([]string{"run", "--range", p.Sub(0, 1), "--", "podman", "run", "--rm", "--stop-timeout", "1"}, containertest.RunFlags("podman")...)
	g := startCmd(t, asUser(append(append(args, "-p", "127.0.0.1:{port}:8080"), httpdArgs(r.Image)...)...))
	a := ownedByContainer(t, userRoot, p.Port(0))
	main := r.Command("podman", "inspect", "--format", "{{.State.Pid}}", a.Container.ID)
	mainPID, _ := main.Output()
	if a.Container.Engine != "podman" || a.Container.Socket != r.Sock || strconv.Itoa(int(a.PID)) != strings.TrimSpace(string(mainPID)) {
		t.Fatalf("container %+v, pid %d; main pid %s", a.Container, a.PID, mainPID)
	}
	var rep checkReport
	if code := runJSON(t, asUser("check", "--json"), &rep, []string{"check"}); code != 0 || rep.Issues != 0 || len(rep.Results) != 1 ||
		rep.Results[0].Container == nil || rep.Results[0].Status != registry.StatusActive {
		t.Fatalf("the user's check: exit %d, %+v", code, rep)
	}

	other := r.Start(t, append([]string{"--name", "rootless-other", "-p", p.Addr(5) + ":8080"}, httpdArgs(r.Image)...)...)
	root := t.TempDir()
	var seen bool
	waitFor(t, "root's check to name the rootless container", 30*time.Second, func() bool {
		gracectlJSON(t, root, nil, &rep, "check", "--range", p.String())
		for _, u := range rep.Unmanaged {
			if u.Port == p.Port(5) && u.Container != nil && u.Container.ID == other && u.Container.Name == "rootless-other" {
				seen = true
			}
		}
		return seen
	})
	out, _ := gracectlCmd(t, root, "who", p.P(5)).CombinedOutput()
	if !strings.Contains(string(out), "container rootless-other ("+r.Image+")") || !strings.Contains(string(out), "rootlessport") {
		t.Fatalf("who as root:\n%s", out)
	}
	var adopted registry.Allocation
	if code := gracectlJSON(t, root, nil, &adopted, "adopt", p.P(5), "--range", p.String()); code != 0 || adopted.Container == nil ||
		adopted.Container.ID != other || adopted.Container.Socket != r.Sock || !adopted.Container.UntilRemoved {
		t.Fatalf("root's adopt: exit %d, %+v %+v", code, adopted, adopted.Container)
	}
	// Stopped, the rootless engine is no longer believed by root (none of
	// its user's processes runs for the container): the port is kept, as
	// for a stopped container, not released as a dead owner's; started
	// again, its new main process owns it.
	if out, err := r.Command("podman", "stop", "-t", "0", other).CombinedOutput(); err != nil {
		t.Fatalf("podman stop: %v: %s", err, out)
	}
	rootCheck := func() *registry.Allocation {
		t.Helper()
		gracectlJSON(t, root, nil, &rep, "check", "--range", p.Sub(5, 6))
		return readRegistry(t, root).Get(p.Port(5))
	}
	if k := rootCheck(); k == nil || k.PID != 0 || k.HealthStatus != registry.StatusReserved {
		t.Fatalf("root's check of the stopped rootless container: %+v, %+v", k, rep)
	}
	if out, err := r.Command("podman", "start", other).CombinedOutput(); err != nil {
		t.Fatalf("podman start: %v: %s", err, out)
	}
	mainPID, _ = r.Command("podman", "inspect", "--format", "{{.State.Pid}}", other).Output()
	waitFor(t, "root's check to find the restarted container's main process", 30*time.Second, func() bool {
		k := rootCheck()
		return k != nil && strconv.Itoa(int(k.PID)) == strings.TrimSpace(string(mainPID)) && k.HealthStatus == registry.StatusActive
	})

	g.cmd.Process.Signal(syscall.SIGTERM)
	if code := g.wait(t, 60*time.Second); code != 137 {
		t.Fatalf("run exited %d, want 137 (busybox ignores SIGTERM; killed after its stop timeout); output:\n%s", code, g.out)
	}
	if readRegistry(t, userRoot).Get(p.Port(0)) != nil || probeListening(p.Port(0)) {
		t.Fatal("the rootless container's port is not released")
	}

	// Detached: run exits with the client (Podman's conmon, rootlessport
	// and slirp4netns, which the client leaves running, are the engine's,
	// not the service's), and the port stays the container's, kept while
	// it is stopped, until it is removed.
	detached := asUser(append(append(append([]string{"run", "--range", p.Sub(2, 3), "--", "podman", "run", "-d", "--name", "rootless-detached"},
		containertest.RunFlags("podman")...), "-p", "127.0.0.1:{port}:8080"), httpdArgs(r.Image)...)...)
	if dg := startCmd(t, detached); dg.wait(t, 60*time.Second) != 0 {
		t.Fatalf("run -- podman run -d failed:\n%s", dg.out)
	}
	d := readRegistry(t, userRoot).Get(p.Port(2))
	if d == nil || d.Container == nil || !d.Container.UntilRemoved || d.Container.Name != "rootless-detached" {
		t.Fatalf("after run -- podman run -d: %+v", d)
	}
	userCheck := func(want string) {
		t.Helper()
		if code := runJSON(t, asUser("check", "--json"), &rep, []string{"check"}); code != 0 || len(rep.Results) != 1 || rep.Results[0].Status != want {
			t.Fatalf("the user's check, want %s: exit %d, %+v", want, code, rep)
		}
	}
	userCheck(registry.StatusActive)
	if out, err := r.Command("podman", "stop", "-t", "0", "rootless-detached").CombinedOutput(); err != nil {
		t.Fatalf("podman stop: %v: %s", err, out)
	}
	userCheck(registry.StatusReserved)
	if out, err := r.Command("podman", "rm", "rootless-detached").CombinedOutput(); err != nil {
		t.Fatalf("podman rm: %v: %s", err, out)
	}
	runJSON(t, asUser("check", "--json"), &rep, []string{"check"})
	if readRegistry(t, userRoot).Get(p.Port(2)) != nil {
		t.Fatalf("the removed container's port is still allocated: %+v", rep)
	}
}

// Where no engine can be reached (here: a mount namespace whose /run is
// empty, so no Docker or Podman socket is there, and no DOCKER_HOST or
// XDG_RUNTIME_DIR), the watchdog works as it does without containers:
// it follows no engine, says nothing of one, and releases a dead owner's
// port at once.
func TestWatchdogWithoutEngine(t *testing.T) {
	needRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1) to make a mount namespace")
	}
	root := t.TempDir()
	deadline := strconv.Itoa(int(testenv.Scale(120*time.Second).Seconds() * 10))
	c := gracectlCmd(t, root)
	c.Dir = root
	c.Path, c.Args = unshare, []string{"unshare", "-m", "--propagation", "private", "sh", "-c", `set -e
mount -t tmpfs tmpfs /run
[ -L /var/run ] || mount -t tmpfs tmpfs /var/run
unset DOCKER_HOST XDG_RUNTIME_DIR
sleep 600 & owner=$!
gracectl allocate --service plain --pid $owner
gracectl watch --interval 1h >watch.log 2>&1 & w=$!
i=0; until grep -q "Health check:" watch.log; do i=$((i+1)); [ $i -lt ` + deadline + ` ]; sleep 0.1; done
kill -9 $owner
i=0; while gracectl port plain >/dev/null 2>&1; do i=$((i+1)); [ $i -lt ` + deadline + ` ]; sleep 0.1; done
kill $w; wait $w || true
cat watch.log`}
	out, err := c.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unshare failed") {
			t.Skipf("cannot make a mount namespace here: %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	log := string(out)
	if !strings.Contains(log, "(plain): dead") {
		t.Errorf("the dead owner's port was not released by the watchdog:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if l := strings.ToLower(line); strings.Contains(l, "[port-") && (strings.Contains(l, "container") || strings.Contains(l, "engine")) {
			t.Errorf("the watchdog spoke of containers where no engine is: %s", line)
		}
	}
}
