package portserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/registry"
)

// DefaultAddress is the --portserver value that asks for the default
// address: SocketName in the state root's run folder, which only the
// registry's owner (and group) can create entries in.
const DefaultAddress = "default"

// SocketName is the default socket's name in the run folder.
const SocketName = "portserver.sock"

// maxSocketPath is the longest Unix socket address Linux and macOS take
// (sun_path holds 108 and 104 bytes with the final NUL; the smaller wins).
const maxSocketPath = 103

// SocketMode lets every local user connect: who may ask for what is
// decided by the peer's credentials and the limits, not by the socket.
const SocketMode = 0o666

// AddressError is a --portserver value that cannot be used: a usage
// mistake.
type AddressError struct{ Msg string }

func (e *AddressError) Error() string { return e.Msg }

// InUseError means another process already serves the address.
type InUseError struct {
	Addr     string
	Abstract bool
}

func (e *InUseError) Error() string {
	if e.Abstract {
		return fmt.Sprintf("the portserver address %s is already taken by another process; any local user can take a free abstract address (docs/security.md)", e.Addr)
	}
	return fmt.Sprintf("the portserver address %s is already served by another process", e.Addr)
}

// Resolve turns a --portserver value into the address to listen on:
// DefaultAddress is the socket in store's run folder (made if needed, never
// through a link); @name is a name in the abstract namespace; anything else
// is a path, whose folder must be one only its owner (this user or root)
// and group can create entries in (registry.CheckPrivateDir), so that no
// other user can have put a socket there first.
func Resolve(value string, store *registry.Store) (string, error) {
	switch {
	case value == DefaultAddress:
		dir, err := store.EnsureRunDir()
		if err != nil {
			return "", fmt.Errorf("cannot use the portserver's folder: %w", err)
		}
		return checkLength(filepath.Join(dir, SocketName))
	case value == "" || value == "@":
		return "", &AddressError{Msg: fmt.Sprintf("--portserver %q is not an address: give a path, @name for the abstract namespace, or --portserver alone for the default socket", value)}
	case strings.HasPrefix(value, "@"):
		if strings.ContainsRune(value, 0) {
			return "", &AddressError{Msg: "--portserver: an abstract name cannot hold a NUL byte"}
		}
		return checkLength(value)
	}
	path, err := filepath.Abs(value)
	if err != nil {
		return "", &AddressError{Msg: fmt.Sprintf("--portserver %s: not a usable path", value)}
	}
	dir := filepath.Dir(path)
	if err := registry.CheckPrivateDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("the folder %s does not exist", dir)
		}
		return "", &AddressError{Msg: fmt.Sprintf("--portserver %s: %v; use a folder only you (and your group) can write, or --portserver alone for the default socket", value, err)}
	}
	return checkLength(path)
}

func checkLength(addr string) (string, error) {
	if len(addr) > maxSocketPath {
		return "", &AddressError{Msg: fmt.Sprintf("--portserver: the address %s is %d bytes, over the %d a Unix socket address can hold", addr, len(addr), maxSocketPath)}
	}
	return addr, nil
}

// Listen listens on a path or, with a leading @, an abstract name (as
// Resolve returned it). A socket an earlier run left at the path is
// replaced, unless something still answers on it; the new socket is made
// connectable by every user (SocketMode), without following a link.
func Listen(addr string) (net.Listener, error) {
	abstract := strings.HasPrefix(addr, "@")
	if !abstract {
		if err := removeStale(addr); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("unix", addr) // Go maps a leading @ to the abstract namespace
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, &InUseError{Addr: addr, Abstract: abstract}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot serve the portserver on %s: %w", addr, err) // worded by registry.PlainError
	}
	if !abstract {
		if err := registry.ChmodNoFollow(addr, SocketMode); err != nil {
			l.Close()
			return nil, fmt.Errorf("cannot let users connect to %s: %s", addr, registry.ErrnoText(err))
		}
	}
	return l, nil
}

// removeStale removes a socket an earlier portserver left at path; one
// that something still answers on is in use, and anything else than a
// socket is not ours to remove.
func removeStale(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot serve the portserver on %s: %s", path, registry.ErrnoText(err))
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("cannot serve the portserver on %s: it exists and is not a socket (remove it, or choose another address)", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return &InUseError{Addr: path}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the old socket %s: %s", path, registry.ErrnoText(err))
	}
	return nil
}
