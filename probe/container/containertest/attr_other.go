//go:build !linux

package containertest

import "syscall"

// daemonAttr puts a daemon a test starts in a process group of its own.
func daemonAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
