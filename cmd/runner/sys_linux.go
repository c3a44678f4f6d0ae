package runner

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the child in its own process group and asks the
// kernel to send it SIGTERM if gracectl dies without forwarding anything
// (SIGKILL, OOM kill). The registry still names the child, so the watchdog
// cleans up either way.
func setChildAttrs(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
