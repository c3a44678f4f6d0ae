package container

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// peer is the uid and pid of the process at the other end of a unix
// socket, as the kernel recorded them when the connection was made
// (SO_PEERCRED); the pid is as this process's PID namespace sees it, 0 when
// it cannot see it.
func peer(c net.Conn) (uid, pid int, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, 0, err
	}
	if credErr != nil {
		return -1, 0, credErr
	}
	return int(cred.Uid), int(cred.Pid), nil
}
