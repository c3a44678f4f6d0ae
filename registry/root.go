package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
					warnings = append(warnings, fmt.Sprintf("skipping the registry in %s: %v", d, err))
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
// the folders become owner:group with the setgid bit and group write
// (02775), so files made in them belong to the group, and the files are
// group-writable (registry and logs 0664, lock files 0660): the group's
// members share one registry without sudo. Without a group the folders
// are 0755, or stay shared if they already are. It may be run again.
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
	dirMode := fs.FileMode(0o755)
	if gid >= 0 {
		dirMode = 0o775 | fs.ModeSetgid
	}
	for _, rel := range []string{".", "databases", RegistryDir, "logs", LogDir} {
		if err := ensureDir(root, rel, dirMode); err != nil {
			return nil, err
		}
		if err := setOwnerMode(filepath.Join(root, rel), gid, dirMode); err != nil {
			return nil, err
		}
	}
	s := Open(root, lockTimeout)
	s.Notice = notice
	if _, err := os.Lstat(s.Path()); errors.Is(err, fs.ErrNotExist) {
		// An empty registry, written as every change is.
		if err := s.Update(context.Background(), func(*Registry, *Tx) error { return nil }); err != nil {
			return nil, err
		}
	}
	file, lock := s.modes()
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		mode := file
		if filepath.Ext(e.Name()) == ".lock" {
			mode = lock
		}
		if e.Type().IsRegular() {
			if err := setOwnerMode(filepath.Join(s.Dir(), e.Name()), gid, mode); err != nil {
				return nil, err
			}
		}
	}
	if _, err := s.NewLock(s.LockPath()); err != nil {
		return nil, err
	}
	return s, setOwnerMode(s.LockPath(), gid, lock)
}

// setOwnerMode gives path the group gid (unless negative) and mode, without
// following a link.
func setOwnerMode(path string, gid int, mode fs.FileMode) error {
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return err
		}
	}
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		return &LinkError{Path: path}
	}
	return os.Chmod(path, mode)
}
