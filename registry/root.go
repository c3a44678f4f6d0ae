package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultHostRoot is the host registry: one per host, shared by every
// service that does not say otherwise.
const DefaultHostRoot = "/var/lib/gracectl"

// Where a state root came from.
const (
	RootFlag    = "--root"
	RootEnv     = "$GRACECTL_ROOT"
	RootProject = "project"
	RootHost    = "host"
	RootPrivate = "private"
)

// RootQuery is what root resolution looks at; the caller reads the
// environment.
type RootQuery struct {
	Flag     string // --root
	Env      string // $GRACECTL_ROOT
	WorkDir  string // where the upward search starts
	HostRoot string // the host registry (DefaultHostRoot unless pointed elsewhere)
	// PrivateRoot is where a user who cannot write the host registry keeps
	// one of their own: ${XDG_STATE_HOME:-$HOME/.local/state}/gracectl.
	PrivateRoot string
}

// Root is a resolved state root.
type Root struct {
	Dir    string
	Source string // RootFlag, RootEnv, RootProject, RootHost or RootPrivate
	// Warnings name project folders the upward search skipped as unsafe.
	Warnings []string
}

// ResolveRoot finds the state root: --root, else $GRACECTL_ROOT, else the
// nearest folder at or above the working folder holding
// databases/port_registry/ that passes SafeProjectRoot, else the host
// registry, else (for a user who cannot write the host registry) a private
// one. Never the working folder by default.
func ResolveRoot(q RootQuery) (Root, error) {
	switch {
	case q.Flag != "":
		return Root{Dir: q.Flag, Source: RootFlag}, nil
	case q.Env != "":
		return Root{Dir: q.Env, Source: RootEnv}, nil
	}
	var warnings []string
	if q.WorkDir != "" {
		abs, err := filepath.Abs(q.WorkDir)
		if err != nil {
			return Root{}, err
		}
		for d := abs; ; {
			if info, err := os.Lstat(filepath.Join(d, RegistryDir)); err == nil && (info.IsDir() || info.Mode()&fs.ModeSymlink != 0) {
				if err := SafeProjectRoot(d); err != nil {
					warnings = append(warnings, fmt.Sprintf("skipping the registry in %s: %s", d, PlainText(err)))
				} else {
					return Root{Dir: d, Source: RootProject, Warnings: warnings}, nil
				}
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	if q.HostRoot == "" {
		q.HostRoot = DefaultHostRoot
	}
	if canWriteRoot(q.HostRoot) || q.PrivateRoot == "" {
		return Root{Dir: q.HostRoot, Source: RootHost, Warnings: warnings}, nil
	}
	return Root{Dir: q.PrivateRoot, Source: RootPrivate, Warnings: warnings}, nil
}

// SafeProjectRoot tells whether a project folder found by the upward
// search may be trusted (as git's safe.directory does): the registry
// folder, databases/ and the project folder itself, and the log folders
// where they exist, must be real folders owned by this user or root and
// not writable by others. A folder another user planted (in /tmp, say)
// could otherwise steer root's writes.
func SafeProjectRoot(dir string) error {
	for _, rel := range []string{".", "databases", RegistryDir, "logs", LogDir} {
		path := filepath.Join(dir, rel)
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) && (rel == "logs" || rel == LogDir) {
			continue
		}
		if err != nil {
			return err
		}
		if err := dirOnly(path, info); err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
			return fmt.Errorf("%s is owned by uid %d, not by you or root", path, uid)
		}
		if info.Mode().Perm()&0o002 != 0 {
			return fmt.Errorf("%s is writable by every user", path)
		}
	}
	return nil
}

// canWriteRoot tells whether this user can change the registry under root:
// root can create it; anyone else needs write access to its registry
// folder, or to the nearest folder that exists on the way there.
func canWriteRoot(root string) bool {
	if os.Geteuid() == 0 {
		return true
	}
	for p := filepath.Join(root, RegistryDir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			return unix.Access(p, unix.W_OK) == nil
		}
		if filepath.Dir(p) == p {
			return false
		}
	}
}

// InitRoot sets up root as a registry for every user of a host: its
// folders, the registry file and the lock file. With a group (gid >= 0)
// the folders belong to owner:group with the setgid bit, so files made in
// them belong to the group; the two folders gracectl writes in
// (databases/port_registry and logs/port_manager) are group-writable
// (02775) and the files in them too (registry and logs 0664, lock files
// 0660): the group's members share one registry without sudo. The folders
// above them stay 02755, so no member can rename a folder away and put a
// link in its place. Without a group the folders are 0755, or stay shared
// if they already are. It may be run again.
//
// Every chown and chmod here acts on a descriptor, each folder opened from
// the one above it and each file from its folder, none through a link
// (openat with O_NOFOLLOW): a member of the group who swaps a file for a
// link to a root-only file between two steps gets an error, never that
// file's mode changed.
func InitRoot(root string, gid int, lockTimeout time.Duration, notice func(string)) (*Store, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := checkDir(root); err != nil {
		return nil, err
	}
	if gid < 0 {
		if info, err := os.Stat(root); err == nil && info.Mode()&fs.ModeSetgid != 0 {
			gid = int(info.Sys().(*syscall.Stat_t).Gid) // already shared: keep it so
		}
	}
	top, leaf := fs.FileMode(0o755), fs.FileMode(0o755)
	if gid >= 0 {
		top, leaf = 0o755|fs.ModeSetgid, 0o775|fs.ModeSetgid
	}
	for _, rel := range []string{RegistryDir, LogDir} {
		if err := ensureDir(root, rel, top); err != nil {
			return nil, err
		}
	}
	s := Open(root, lockTimeout)
	s.Notice = notice
	regDir, err := initFolders(root, gid, top, leaf)
	if err != nil {
		return nil, err
	}
	defer regDir.Close()
	if _, err := os.Lstat(s.Path()); errors.Is(err, fs.ErrNotExist) {
		// An empty registry, written as every change is.
		if err := s.Update(context.Background(), func(*Registry, *Tx) error { return nil }); err != nil {
			return nil, err
		}
	}
	lf, err := s.NewLock(s.LockPath())
	if err != nil {
		return nil, err
	}
	lf.Close()
	file, lock := s.modes()
	entries, err := regDir.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		mode := file
		if filepath.Ext(e.Name()) == ".lock" {
			mode = lock
		}
		if err := setOwnerModeAt(regDir, e.Name(), false, gid, mode); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// initFolders gives the registry's folders their group and modes, each
// opened from the one above it, and returns the registry folder, open.
func initFolders(root string, gid int, top, leaf fs.FileMode) (*os.File, error) {
	rootDir, err := os.OpenFile(root, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer rootDir.Close()
	if err := chownChmod(rootDir, gid, top); err != nil {
		return nil, err
	}
	regDir, err := initFolder(rootDir, RegistryDir, gid, top, leaf)
	if err != nil {
		return nil, err
	}
	logDir, err := initFolder(rootDir, LogDir, gid, top, leaf)
	if err != nil {
		regDir.Close()
		return nil, err
	}
	logDir.Close()
	return regDir, nil
}

// initFolder gives rel ("databases/port_registry") under the open root
// folder its group and modes: top for the folder above, leaf for rel
// itself, which it returns open.
func initFolder(rootDir *os.File, rel string, gid int, top, leaf fs.FileMode) (*os.File, error) {
	upper, lower, _ := strings.Cut(rel, "/")
	p, err := openAt(rootDir, upper, true)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := chownChmod(p, gid, top); err != nil {
		return nil, err
	}
	d, err := openAt(p, lower, true)
	if err != nil {
		return nil, err
	}
	if err := chownChmod(d, gid, leaf); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// openAt opens name in the folder dir: never through a link (O_NOFOLLOW),
// never waiting on a FIFO (O_NONBLOCK), a folder if dir is set and
// otherwise a regular file with no other hard link (a link another user
// made to a file of root's must not get the registry's mode).
func openAt(parent *os.File, name string, dir bool) (*os.File, error) {
	path := filepath.Join(parent.Name(), name)
	flag := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if dir {
		flag |= unix.O_DIRECTORY
	}
	fd, err := unix.Openat(int(parent.Fd()), name, flag, 0)
	if err != nil {
		if isLinkErr(err) {
			return nil, &LinkError{Path: path}
		}
		if errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%s is not a folder", path)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if dir {
		return f, nil
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = &NotRegularError{Path: path, Mode: info.Mode()}
	}
	if st, ok := info.Sys().(*syscall.Stat_t); err == nil && ok && uint64(st.Nlink) > 1 {
		err = fmt.Errorf("%s has %d hard links; gracectl makes none, so it leaves it alone (remove the other links)", path, st.Nlink)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// setOwnerModeAt gives name in the folder parent the group gid (unless
// negative) and mode, through a descriptor opened without following a
// link.
func setOwnerModeAt(parent *os.File, name string, dir bool, gid int, mode fs.FileMode) error {
	f, err := openAt(parent, name, dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return chownChmod(f, gid, mode)
}

// chownChmod gives the open file f the group gid (unless negative) and
// mode: fchown and fchmod, on the descriptor, never on a name.
func chownChmod(f *os.File, gid int, mode fs.FileMode) error {
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return err
		}
	}
	return f.Chmod(mode)
}
