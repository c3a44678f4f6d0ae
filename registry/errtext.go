package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/gracectl/gracectl/probe"
)

// PlainError is err's message with the operating system's part said in
// words, and a hint saying what to do ("" if there is nothing to add): no
// "mkdir /x: no such file or directory" or "listen tcp …: bind: address
// already in use" reaches the user. The Go
// error that says it is found in err's chain and its text replaced where
// the message quotes it; a message that does not quote it is left as it
// is.
func PlainError(err error) (msg, hint string) {
	msg = err.Error()
	replace := func(inner error, plain string) {
		if s := inner.Error(); s != "" && strings.Contains(msg, s) {
			msg = strings.Replace(msg, s, plain, 1)
		}
	}
	var oe *net.OpError
	var pe *fs.PathError
	var se *os.SyscallError
	switch {
	case errors.As(err, &oe) && oe.Op == "listen":
		var plain string
		plain, hint = listenError(oe)
		replace(oe, plain)
	case errors.As(err, &pe):
		var plain string
		plain, hint = pathError(pe.Op, pe.Path, pe.Err)
		replace(pe, plain)
	case errors.As(err, &se):
		replace(se, ErrnoText(se.Err))
	}
	return msg, hint
}

// PlainText is PlainError's message alone, for a log line or a warning,
// which have no room for a hint.
func PlainText(err error) string {
	msg, _ := PlainError(err)
	return msg
}

// pathError says what went wrong with a file or folder, in words.
func pathError(op, path string, err error) (plain, hint string) {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Sprintf("%s: %s", path, err), ""
	}
	switch errno {
	case syscall.ENOENT:
		if op == "mkdir" {
			return fmt.Sprintf("folder %s cannot be made: the folder above it does not exist or takes no new folders", path),
				"choose a folder you can create, such as one under your home folder (--root DIR)"
		}
		return fmt.Sprintf("%s does not exist", path), ""
	case syscall.EACCES, syscall.EPERM:
		verb := map[string]string{"mkdir": "create", "open": "open", "openat": "open", "chmod": "change the mode of",
			"chown": "change the owner of", "rename": "replace", "remove": "remove", "unlinkat": "remove"}[op]
		if verb == "" {
			verb = "use"
		}
		return fmt.Sprintf("%s may not %s %s", you(), verb, path), ""
	case syscall.EROFS:
		return fmt.Sprintf("%s is on a read-only file system", path), "use a folder on a writable file system (--root DIR)"
	case syscall.ENOSPC, syscall.EDQUOT:
		return fmt.Sprintf("the disk holding %s is full", path), "free some space there, or use a folder on another disk (--root DIR)"
	case syscall.ENOTDIR:
		return fmt.Sprintf("a part of %s is a file, not a folder", path), ""
	case syscall.EISDIR:
		return fmt.Sprintf("%s is a folder, not a file", path), ""
	}
	return fmt.Sprintf("%s: %s", path, ErrnoText(errno)), ""
}

// listenError says why an address could not be listened on, in words.
func listenError(oe *net.OpError) (plain, hint string) {
	addr := ""
	if oe.Addr != nil {
		addr = oe.Addr.String()
	}
	var errno syscall.Errno
	errors.As(oe.Err, &errno)
	switch errno {
	case syscall.EADDRINUSE:
		if oe.Net == "unix" {
			return fmt.Sprintf("socket %s is in use by another program", addr), "stop that program, or choose another address"
		}
		return fmt.Sprintf("address %s is in use by another program", addr),
			fmt.Sprintf("choose another address, or find what listens there: gracectl who %s", portOf(addr))
	case syscall.EACCES:
		if oe.Net == "unix" {
			return fmt.Sprintf("%s may not create the socket %s", you(), addr), "choose a folder you can write"
		}
		return fmt.Sprintf("only root may listen on %s (a port below 1024)", addr), "choose a port above 1023"
	case syscall.EADDRNOTAVAIL:
		return fmt.Sprintf("%s is not an address of this host", addr), "give one of this host's addresses (ip -brief address), or 0.0.0.0 for all of them"
	case syscall.ENOENT:
		return fmt.Sprintf("the socket %s cannot be made there: its folder does not exist or takes no new files", addr), "choose a folder that exists and that you can write"
	}
	return fmt.Sprintf("cannot listen on %s: %s", addr, ErrnoText(oe.Err)), ""
}

// portOf is the port of "host:port", or the whole address.
func portOf(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}

// you is "you (alice)", the user this process acts as, for a message.
func you() string {
	if name := probe.ProcessUser(os.Getpid()); name != "" {
		return "you (" + name + ")"
	}
	return "you"
}

// ErrnoText is the system's words for err's errno ("no such file or
// directory"), without Go's layers around them.
func ErrnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
