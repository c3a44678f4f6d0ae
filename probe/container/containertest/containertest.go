// Package containertest gives tests a real container engine and a small
// local image to run: the static busybox of Debian's busybox-static,
// imported with `docker import` (or `podman import`), so nothing is pulled
// from a registry. A test that cannot have an engine skips, saying why.
// Only tests import this package.
package containertest

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

// Busybox is the static busybox put in the image as /bin/busybox.
const Busybox = "/bin/busybox"

var (
	mu     sync.Mutex
	images = map[string]string{} // engine → image, made once per process
	fails  = map[string]string{} // engine → why it cannot run containers
)

// Image returns a local image holding /bin/busybox for engine ("docker"
// or "podman"), made once per test process; it skips t when the engine
// cannot run containers here.
func Image(t testing.TB, engine string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if why := fails[engine]; why != "" {
		t.Skip(why)
	}
	if img := images[engine]; img != "" {
		return img
	}
	img, err := makeImage(engine)
	if err != nil {
		fails[engine] = fmt.Sprintf("%s cannot run containers here: %v", engine, err)
		t.Skip(fails[engine])
	}
	images[engine] = img
	return img
}

// makeImage imports a tarball of the static busybox and checks that a
// container of it runs.
func makeImage(engine string) (string, error) {
	if _, err := exec.LookPath(engine); err != nil {
		return "", err
	}
	return importImage(engine, nil)
}

// importImage makes the image with the engine's client, env added to its
// environment (the engine a test started for itself).
func importImage(engine string, env []string) (string, error) {
	buf, err := busyboxTar()
	if err != nil {
		return "", err
	}
	img := fmt.Sprintf("localhost/gracectl-test-busybox:%d", os.Getpid())
	command := func(args ...string) *exec.Cmd {
		c := exec.Command(engine, args...)
		c.Env = append(os.Environ(), env...)
		return c
	}
	c := command("import", "-", img)
	c.Stdin = buf
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s import: %v: %s", engine, err, lastLine(out))
	}
	args := append(append([]string{"run", "--rm"}, RunFlags(engine)...), img, Busybox, "true")
	if out, err := command(args...).CombinedOutput(); err != nil {
		_ = command("rmi", img).Run()
		return "", fmt.Errorf("%s run: %v: %s", engine, err, lastLine(out))
	}
	return img, nil
}

// busyboxTar is a tarball of the static busybox as /bin/busybox.
func busyboxTar() (*bytes.Buffer, error) {
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	_, _ = tw.Write(bb)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// staticBusybox reads /bin/busybox and checks it needs no dynamic loader.
func staticBusybox() ([]byte, error) {
	f, err := elf.Open(Busybox)
	if err != nil {
		return nil, fmt.Errorf("%s: %v (install busybox-static)", Busybox, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is dynamically linked (install busybox-static)", Busybox)
		}
	}
	return os.ReadFile(Busybox)
}

// RunFlags are the flags every test container of engine gets: Podman's
// runtime cannot raise the open-file and process limits in some sandboxes,
// so its containers keep limits any process may set.
func RunFlags(engine string) []string {
	if engine == "podman" {
		return []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	}
	return nil
}

// Remove deletes the images made (call it from TestMain).
func Remove() {
	mu.Lock()
	defer mu.Unlock()
	for engine, img := range images {
		_ = exec.Command(engine, "rmi", "-f", img).Run()
	}
}

// Engine runs an engine command and returns its trimmed output, failing t
// on error.
func Engine(t testing.TB, engine string, args ...string) string {
	t.Helper()
	out, err := exec.Command(engine, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", engine, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Start starts a detached container of engine (its ID returned) and
// removes it in t's cleanup, whatever happens.
func Start(t testing.TB, engine string, args ...string) string {
	t.Helper()
	id := Engine(t, engine, append(append([]string{"run", "-d"}, RunFlags(engine)...), args...)...)
	t.Cleanup(func() { RemoveContainer(engine, id) })
	return id
}

// RemoveContainer removes a container, running or not, at once (docker
// rm -f kills it; podman's needs -t 0 not to wait for busybox, which as
// PID 1 ignores SIGTERM).
func RemoveContainer(engine, id string) {
	args := []string{"rm", "-f", id}
	if engine == "podman" {
		args = []string{"rm", "-f", "-t", "0", id}
	}
	_ = exec.Command(engine, args...).Run()
}

// MainPID is the container's main process, as the engine says.
func MainPID(t testing.TB, engine, id string) string {
	t.Helper()
	return Engine(t, engine, "inspect", "--format", "{{.State.Pid}}", id)
}

// Gone reports whether the engine no longer knows the container.
func Gone(engine, id string) bool {
	return exec.Command(engine, "inspect", id).Run() != nil
}

// WaitGone waits until the engine no longer knows the container.
func WaitGone(t testing.TB, engine, id string, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("container %.12s to be gone", id), timeout, func() bool { return Gone(engine, id) })
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// PodmanService starts `podman system service` on a socket in a temp folder
// (Podman has no daemon: its Docker-compatible API is this service) and
// stops it in t's cleanup; it returns the socket's path.
func PodmanService(t testing.TB) string {
	t.Helper()
	sock := t.TempDir() + "/podman.sock"
	c := exec.Command("podman", "system", "service", "--time=0", "unix://"+sock)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Skipf("podman system service cannot start: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		waitOrKill(c.Process.Pid, done, 10*time.Second)
	})
	deadline := time.Now().Add(testenv.Scale(30 * time.Second))
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
		select {
		case <-done:
			t.Skip("podman system service exited at once")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman system service made no socket at %s in time", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOrKill waits for done (a daemon the test started, asked to stop, has
// been waited for), and kills the daemon's process group pgid if that
// takes longer than timeout (scaled).
func waitOrKill(pgid int, done <-chan struct{}, timeout time.Duration) {
	select {
	case <-done:
	case <-time.After(testenv.Scale(timeout)):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
}
