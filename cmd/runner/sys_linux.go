package runner

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setChildAttrs puts the child in its own process group and asks the
// kernel to send it SIGTERM if gracectl dies without forwarding anything
// (SIGKILL, OOM kill). The registry still names the child, so the watchdog
// cleans up either way.
func setChildAttrs(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// becomeSubreaper makes gracectl the child subreaper of its descendants:
// a service that daemonizes (double fork, setsid) is re-parented to
// gracectl instead of init, so gracectl still sees it.
func becomeSubreaper() bool {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == nil
}
