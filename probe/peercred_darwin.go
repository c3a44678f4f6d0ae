package probe

import "golang.org/x/sys/unix"

func peerCred(fd int) (Peer, error) {
	x, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	if err != nil {
		pid = 0
	}
	return Peer{UID: int(x.Uid), PID: pid}, nil
}

// Inspect reads what ProcessInfo holds of pid from one sysctl
// kern.proc.pid answer (start time, user IDs, kernel flag), and the name.
func Inspect(pid int, _ bool) (ProcessInfo, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || kp.Proc.P_pid != int32(pid) || kp.Proc.P_stat == 5 { // SZOMB
		return ProcessInfo{}, ErrNoProcess
	}
	tv := kp.Proc.P_starttime
	return ProcessInfo{
		ID:   Identity{PID: pid, Start: uint64(tv.Sec)*1e6 + uint64(tv.Usec)},
		Name: unix.ByteSliceToString(kp.Proc.P_comm[:]),
		UID:  int(kp.Eproc.Pcred.P_ruid), EUID: int(kp.Eproc.Ucred.Uid),
		Kernel: pid == 0,
	}, nil
}
