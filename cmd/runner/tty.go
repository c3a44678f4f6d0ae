package runner

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// foreground hands the terminal to the child's process group while it runs,
// so an interactive service can read from it even though it has a group of
// its own, and takes it back afterwards.
type foreground struct {
	fd   int
	pgrp int
	done bool
}

func prepareForeground(c *exec.Cmd, stdin *os.File) *foreground {
	if stdin == nil {
		return &foreground{done: true}
	}
	fd := int(stdin.Fd())
	tpgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || tpgrp != syscall.Getpgrp() {
		return &foreground{done: true} // not a terminal, or we are not in front
	}
	c.SysProcAttr.Foreground = true
	c.SysProcAttr.Ctty = fd
	return &foreground{fd: fd, pgrp: tpgrp}
}

func (f *foreground) restore() {
	if f.done {
		return
	}
	f.done = true
	// tcsetpgrp from a background group raises SIGTTOU; ignore it meanwhile.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	if err := unix.IoctlSetPointerInt(f.fd, unix.TIOCSPGRP, f.pgrp); err != nil && !errors.Is(err, unix.ENOTTY) {
		return
	}
}
