//go:build !linux && !darwin

package probe

import (
	"errors"
	"os"
	"syscall"
)

// processStart cannot read a start time here; it only checks that the PID
// exists (signal 0), so identity falls back to the PID alone.
func processStart(pid int) (uint64, error) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, ErrNoProcess
	}
	if err := p.Signal(syscall.Signal(0)); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, ErrNoProcess
	}
	return 0, nil
}

func readBootID() string { return "" }
