//go:build !linux

package testenv

import "syscall"

// Outside Linux: a process group of its own, killed at the test's end; no
// parent-death signal and no reading of other processes' environments, so
// KillTagged finds nothing.
func ownAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// KillGroup sends SIGKILL to the process group pid leads, and to pid.
func KillGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
}

func kill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func allPIDs() []int { return nil }

func envOf(int, string) string { return "" }
