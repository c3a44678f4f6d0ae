package probe

import (
	"errors"

	"golang.org/x/sys/unix"
)

// processStart returns the process start time in microseconds since the
// epoch, from sysctl kern.proc.pid.
func processStart(pid int) (uint64, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, ErrNoProcess
		}
		return 0, err
	}
	if kp.Proc.P_pid != int32(pid) {
		return 0, ErrNoProcess
	}
	if kp.Proc.P_stat == 5 { // SZOMB
		return 0, ErrNoProcess
	}
	tv := kp.Proc.P_starttime
	return uint64(tv.Sec)*1e6 + uint64(tv.Usec), nil
}

func readBootID() string { return "" }
