package containertest

import "syscall"

// daemonAttr puts a daemon a test starts in a process group of its own,
// stopped (SIGTERM) if the test binary dies.
func daemonAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
