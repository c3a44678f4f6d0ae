//go:build !linux

package runner

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts the child in its own process group. There is no
// parent-death signal outside Linux: if gracectl is killed outright the
// child runs on, and the watchdog releases its port when it ends.
func setChildAttrs(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// becomeSubreaper is Linux-only: elsewhere a daemonized descendant goes to
// init, and run behaves as with --no-wait-descendants.
func becomeSubreaper() bool { return false }
