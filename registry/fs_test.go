package registry

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

// Files under a state root are opened only if they are regular files: a
// FIFO in place of the registry, its lock, today's log or a file init
// touches is an error at once, never a wait.
func TestFIFOsAreRefused(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(s *Store) string{
		"registry file": func(s *Store) string { return s.Path() },
		"lock file":     func(s *Store) string { return s.LockPath() },
		"today's log":   func(s *Store) string { return LogPath(s.LogDir(), time.Now()) },
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			s := Open(t.TempDir(), 2*time.Second)
			if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(s.LogDir(), 0o755); err != nil {
				t.Fatal(err)
			}
			p := path(s)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			b := testenv.Ports(t, 10)
			done := make(chan error, 1)
			go func() {
				_, err := s.Allocate(ctx, Request{Service: "x", Range: Range{Start: b.Start, End: b.End}})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("allocate hung on a FIFO")
			}
			var ne *NotRegularError
			if !errors.As(err, &ne) || ne.Path != p || !strings.Contains(err.Error(), "is a FIFO (named pipe), not a regular file") {
				t.Fatalf("want a NotRegularError naming %s, got %v", p, err)
			}
		})
	}
}

// openAt, which init's chmods and chowns go through, refuses a link, a
// FIFO and a file with another hard link, and leaves their targets alone.
func TestOpenAtRefusesLinksFIFOsAndHardLinks(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(t.TempDir(), "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for name, want := range map[string]string{"link": "is a symbolic link", "fifo": "is a FIFO", "hard": "hard links"} {
		err := setOwnerModeAt(d, name, false, -1, 0o664)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error saying %q", name, err, want)
		}
	}
	if err := setOwnerModeAt(d, "link", true, -1, 0o775); err == nil {
		t.Errorf("a link was opened as a folder")
	}
	if info, _ := os.Stat(secret); info.Mode().Perm() != 0o600 {
		t.Errorf("the secret's mode became %v", info.Mode())
	}
}

// The attack of issue 22 (item 6), as it was reproduced: while root runs
// init --group, a member of the group swaps a file in the registry folder
// for a link to a root-only 0600 file, again and again. The file never
// gets the registry's mode or group. Needs root (the member is nobody, in
// group nogroup, through setpriv) and python3 (the fast swapper).
func TestInitGroupLinkSwapRace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (to act as a group member with setpriv)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	// A python3 that nobody may run (root's PATH may lead to one under /root).
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python)
	}
	const group = 65534 // nogroup: nobody's group
	base, err := os.MkdirTemp("", "gracectl-init-race-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "host")
	s, err := InitRoot(root, group, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	swap := `
import os, sys
d, target = sys.argv[1], sys.argv[2]
v, f, l = os.path.join(d, "victim.json"), os.path.join(d, ".f"), os.path.join(d, ".l")
while True:
    for p in (f, l):
        try: os.unlink(p)
        except FileNotFoundError: pass
    open(f, "w").close()
    os.rename(f, v)
    os.symlink(target, l)
    os.rename(l, v)
`
	swapper := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", python, "-c", swap, s.Dir(), secret)
	if err := swapper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { swapper.Process.Kill(); swapper.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Lstat(filepath.Join(s.Dir(), "victim.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the swapper never made its file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	refused := 0
	for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
		if _, err := InitRoot(root, group, time.Second, nil); err != nil {
			refused++
		}
	}
	info, err := os.Lstat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 || info.Sys().(*syscall.Stat_t).Gid != 0 {
		t.Fatalf("the root-only file became %v group %d", info.Mode(), info.Sys().(*syscall.Stat_t).Gid)
	}
	t.Logf("%d inits refused the link they met", refused)
	// Only the registry and log folders are group-writable: a member
	// cannot rename a folder above them away and plant a link instead.
	for rel, want := range map[string]os.FileMode{".": 0o755, "databases": 0o755, "logs": 0o755, RegistryDir: 0o775, LogDir: 0o775} {
		info, _ := os.Lstat(filepath.Join(root, rel))
		if info.Mode() != want|os.ModeDir|os.ModeSetgid {
			t.Errorf("%s: %v, want %v", rel, info.Mode(), want|os.ModeDir|os.ModeSetgid)
		}
	}
}
