package probe

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ProcNetAvailable reports whether listeners are read from /proc (no
// connection is then made to a service to see if it listens).
func ProcNetAvailable() bool {
	_, err := os.Stat("/proc/net/tcp")
	return err == nil
}

// Listeners returns, for each TCP port in LISTEN state on any address
// (IPv4 and IPv6), the socket inodes listening on it: from sock_diag
// netlink where the kernel offers it, else from /proc/net/tcp{,6}.
func Listeners() (map[int][]uint64, error) {
	if out, err := listenersNetlink(); err == nil {
		return out, nil
	}
	return listenersProc()
}

func listenersProc() (map[int][]uint64, error) {
	out := map[int][]uint64{}
	found := false
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		found = true
		if err := ParseProcNetTCP(bytes.NewReader(data), func(port int, inode uint64) {
			out[port] = append(out[port], inode)
		}); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("cannot read /proc/net/tcp")
	}
	return out, nil
}

// SocketOwners maps socket inodes to the PIDs holding them open, by reading
// the links in /proc/*/fd. Processes of other users are skipped when their
// fds cannot be read (run as root to see all).
func SocketOwners(inodes map[uint64]bool) map[uint64][]int {
	out := map[uint64][]int{}
	if len(inodes) == 0 {
		return out
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 64)
			if err != nil || !inodes[ino] {
				continue
			}
			if !slices.Contains(out[ino], pid) {
				out[ino] = append(out[ino], pid)
			}
		}
	}
	return out
}

// EphemeralRange is the kernel's range for outgoing connections' local
// ports (/proc/sys/net/ipv4/ip_local_port_range).
func EphemeralRange() (lo, hi int, err error) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("malformed ip_local_port_range %q", data)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("malformed ip_local_port_range %q", data)
	}
	return lo, hi, nil
}
