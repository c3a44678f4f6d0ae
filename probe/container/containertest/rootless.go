package containertest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

// RootlessUser is the unprivileged user rootless tests run Podman as,
// unless $GRACECTL_TEST_ROOTLESS_USER names another. It needs ranges in
// /etc/subuid and /etc/subgid (`useradd -m` gives them; .ci/run makes it).
const RootlessUser = "gracectl-rootless"

// Rootless is rootless Podman of an unprivileged user, set up for a test:
// a home and a runtime folder of the test's own (so its storage, and its
// $XDG_RUNTIME_DIR, which is not /run/user/UID, start empty), the busybox
// image, and its API service on a socket in that runtime folder.
type Rootless struct {
	User       string
	UID, GID   int
	Dir        string // the test's folder, the user's: home, runtime folder, what the test puts there
	RuntimeDir string // the user's $XDG_RUNTIME_DIR here
	Sock       string // its `podman system service` socket: RuntimeDir/podman/podman.sock
	Image      string
	tag        string
}

// RootlessPodman sets rootless Podman up for t, as RootlessUser, and takes
// it down (its containers, service and pause process) in t's cleanup. t
// skips, saying why, where that cannot be: not root, no setpriv or
// newuidmap, no such user or no subordinate IDs for it, or a Podman that
// cannot run a container rootless here.
func RootlessPodman(t testing.TB) *Rootless {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("rootless Podman is run as another user, which needs root")
	}
	for _, tool := range []string{"podman", "setpriv", "newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("rootless Podman needs %s (uidmap)", tool)
		}
	}
	name := RootlessUser
	if v := os.Getenv("GRACECTL_TEST_ROOTLESS_USER"); v != "" {
		name = v
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s to run rootless Podman as (useradd -m %s; or name one in GRACECTL_TEST_ROOTLESS_USER)", name, name)
	}
	r := &Rootless{User: name, tag: testenv.Tag(t)}
	r.UID, _ = strconv.Atoi(u.Uid)
	r.GID, _ = strconv.Atoi(u.Gid)
	if r.UID == 0 {
		t.Skipf("user %s is root", name)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if !hasSubIDs(f, name, u.Uid) {
			t.Skipf("user %s has no range in %s, which rootless Podman needs", name, f)
		}
	}
	if _, err := staticBusybox(); err != nil {
		t.Skip(err)
	}
	if r.Dir, err = os.MkdirTemp("", "gracectl-rootless-"); err != nil {
		t.Fatal(err)
	}
	r.RuntimeDir = filepath.Join(r.Dir, "run")
	for _, d := range []string{r.Dir, r.RuntimeDir, filepath.Join(r.Dir, "home"), filepath.Join(r.RuntimeDir, "podman")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, r.UID, r.GID); err != nil {
			t.Fatal(err)
		}
	}
	r.Sock = filepath.Join(r.RuntimeDir, "podman", "podman.sock")
	var svc *exec.Cmd
	svcDone := make(chan struct{})
	t.Cleanup(func() {
		_ = r.Command("podman", "rm", "-f", "-t", "0", "--all").Run()
		if svc != nil {
			_ = syscall.Kill(-svc.Process.Pid, syscall.SIGTERM)
			waitOrKill(svc.Process.Pid, svcDone, 10*time.Second)
		}
		// The pause process that holds the user's namespace.
		if b, err := os.ReadFile(filepath.Join(r.RuntimeDir, "libpod", "tmp", "pause.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// Whatever is left of the user's (conmon's exit command, which
		// would make parts of the runtime folder again) carries the tag.
		testenv.KillTagged(strings.TrimPrefix(r.tag, testenv.TagEnv+"="))
		if err := os.RemoveAll(r.Dir); err != nil {
			t.Logf("the rootless test folder %s stays: %v", r.Dir, err)
		}
	})
	if r.Image, err = r.importImage(); err != nil {
		t.Skipf("rootless Podman cannot run containers here: %v", err)
	}
	svc = r.Command("podman", "system", "service", "--time=0", "unix://"+r.Sock)
	svc.SysProcAttr.Setpgid = true
	if err := svc.Start(); err != nil {
		t.Skipf("rootless podman system service cannot start: %v", err)
	}
	go func() { _ = svc.Wait(); close(svcDone) }()
	testenv.WaitFor(t, "the rootless podman service to accept", 30*time.Second, func() bool {
		select {
		case <-svcDone:
			t.Skip("rootless podman system service exited at once")
		default:
		}
		c, err := net.Dial("unix", r.Sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

// hasSubIDs reports whether file (/etc/subuid, /etc/subgid) gives the user
// (by name or uid) a range.
func hasSubIDs(file, name, uid string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		who, _, _ := strings.Cut(sc.Text(), ":")
		if who == name || who == uid {
			return true
		}
	}
	return false
}

// importImage makes the busybox image in the user's storage and checks a
// container of it runs.
func (r *Rootless) importImage() (string, error) {
	c := r.Command("podman", "import", "-", "localhost/gracectl-test-busybox:rootless")
	tarball, err := busyboxTar()
	if err != nil {
		return "", err
	}
	c.Stdin = tarball
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("podman import: %v: %s", err, lastLine(out))
	}
	img := "localhost/gracectl-test-busybox:rootless"
	args := append(append([]string{"run", "--rm"}, RunFlags("podman")...), img, Busybox, "true")
	if out, err := r.Command("podman", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("podman run: %v: %s", err, lastLine(out))
	}
	return img, nil
}

// Env is the user's environment: its home and runtime folder, and the
// test's tag (so whatever is left is killed when the test ends).
func (r *Rootless) Env() []string {
	return []string{"HOME=" + filepath.Join(r.Dir, "home"), "XDG_RUNTIME_DIR=" + r.RuntimeDir, "USER=" + r.User, "LOGNAME=" + r.User,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", r.tag}
}

// Command runs name as the user (setpriv), with Env only.
func (r *Rootless) Command(name string, args ...string) *exec.Cmd {
	c := exec.Command("setpriv", append([]string{"--reuid=" + strconv.Itoa(r.UID), "--regid=" + strconv.Itoa(r.GID), "--init-groups", name}, args...)...)
	c.Env = r.Env()
	c.Dir = r.Dir
	c.SysProcAttr = &syscall.SysProcAttr{}
	return c
}

// Start starts a detached container as the user and returns its ID.
func (r *Rootless) Start(t testing.TB, args ...string) string {
	t.Helper()
	out, err := r.Command("podman", append(append([]string{"run", "-d"}, RunFlags("podman")...), args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rootless podman run -d %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Install copies the executable at path into the test's folder, where the
// user may run it, and returns the copy's path.
func (r *Rootless) Install(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(r.Dir, filepath.Base(path))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Mkdir makes a folder of the user's in the test's folder.
func (r *Rootless) Mkdir(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(r.Dir, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, r.UID, r.GID); err != nil {
		t.Fatal(err)
	}
	return d
}
