//go:build !linux

package probe

import (
	"io/fs"
	"syscall"
)

// FlockHolders needs the kernel's lock table, which only Linux shows.
func FlockHolders(fs.FileInfo) ([]int, error) { return nil, ErrNoLockTable }

// ExecutableIs compares the process's name (sysctl on macOS) with name.
func ExecutableIs(pid int, name string) bool { return ProcessName(pid) == name }

// Signal checks id's start time, then signals its PID.
func Signal(id Identity, sig syscall.Signal) error {
	local, l := Resolve(id)
	if l != Running {
		return ErrNoProcess
	}
	return signalByPID(id, local, sig)
}
