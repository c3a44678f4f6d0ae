package probe

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

func peerCred(fd int) (Peer, error) {
	u, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	return Peer{UID: int(u.Uid), PID: int(u.Pid)}, nil
}

// pfKthread is PF_KTHREAD in the flags field of /proc/PID/stat.
const pfKthread = 0x00200000

// Inspect reads what ProcessInfo holds of pid (the user IDs only if users
// is set) through one descriptor of /proc/PID: once the folder is open,
// every read through it fails (ESRCH) if the process ends, so no fact can
// come from a later process with the same PID.
func Inspect(pid int, users bool) (ProcessInfo, error) {
	if pid <= 0 {
		return ProcessInfo{}, ErrNoProcess
	}
	dir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ProcessInfo{}, ErrNoProcess
	}
	defer unix.Close(dir)
	stat, err := readAt(dir, "stat")
	if err != nil {
		return ProcessInfo{}, ErrNoProcess
	}
	st, err := ParseStat(stat)
	if err != nil {
		return ProcessInfo{}, err
	}
	if st.Zombie {
		return ProcessInfo{}, ErrNoProcess
	}
	info := ProcessInfo{ID: Identity{PID: pid, Start: st.Start, Boot: BootID()}, Name: st.Comm, UID: -1, EUID: -1,
		Kernel: st.Flags&pfKthread != 0}
	if users {
		status, err := readAt(dir, "status")
		if err != nil {
			return ProcessInfo{}, ErrNoProcess
		}
		info.UID, info.EUID = parseStatusUIDs(status)
	}
	info.ID.PIDNS, info.ID.NetNS = nsInodeAt(dir, "ns/pid"), nsInodeAt(dir, "ns/net")
	return info, nil
}

func readAt(dir int, name string) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

func nsInodeAt(dir int, name string) uint64 {
	buf := make([]byte, 64)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return 0
	}
	return parseNSLink(string(buf[:n]))
}

// parseStatusUIDs reads the real and effective user IDs of the "Uid:" line
// of /proc/PID/status; -1 for what is missing.
func parseStatusUIDs(status []byte) (uid, euid int) {
	uid, euid = -1, -1
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) >= 2 {
			if n, err := strconv.Atoi(string(f[0])); err == nil {
				uid = n
			}
			if n, err := strconv.Atoi(string(f[1])); err == nil {
				euid = n
			}
		}
		break
	}
	return uid, euid
}
