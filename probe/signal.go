package probe

import "syscall"

// signalByPID is Signal where there are no pidfds: the start time is
// checked, then the PID signalled, which leaves the moment between the
// two to a PID reuse.
func signalByPID(id Identity, local int, sig syscall.Signal) error {
	if start, err := processStart(local); err != nil || (id.Start != 0 && start != id.Start) {
		return ErrNoProcess
	}
	if err := syscall.Kill(local, sig); err != nil {
		if err == syscall.ESRCH {
			return ErrNoProcess
		}
		return err
	}
	return nil
}
