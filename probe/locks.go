package probe

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// ErrNoLockTable means the kernel's table of file locks (/proc/locks) is
// not available here (off Linux).
var ErrNoLockTable = errors.New("the kernel's lock table (/proc/locks) is only read on Linux")

// FileLock is one line of /proc/locks: a lock held (or waited for, with
// "->") on a file, named by device and inode.
type FileLock struct {
	Kind         string // FLOCK, POSIX, OFDLCK, LEASE, ...
	Waiting      bool   // "->": blocked, waiting for the lock
	Write        bool   // WRITE (exclusive), else READ (shared)
	PID          int    // the locker, in /proc's view; -1 for OFD locks, 0 when not visible
	Major, Minor uint32
	Inode        uint64
}

// ParseProcLocks reads the kernel's lock table, in the form of
// /proc/locks:
//
//	1: FLOCK  ADVISORY  WRITE 4242 fe:00:837289 0 EOF
//	2: -> FLOCK  ADVISORY  WRITE 4343 fe:00:837289 0 EOF
//
// Lines it cannot read are skipped.
func ParseProcLocks(data []byte) []FileLock {
	var out []FileLock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		var l FileLock
		f = f[1:] // the "N:" ordinal
		if f[0] == "->" {
			l.Waiting, f = true, f[1:]
		}
		if len(f) < 5 {
			continue
		}
		l.Kind, l.Write = f[0], f[2] == "WRITE"
		pid, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		l.PID = pid
		dev := strings.Split(f[4], ":")
		if len(dev) != 3 {
			continue
		}
		major, err1 := strconv.ParseUint(dev[0], 16, 32)
		minor, err2 := strconv.ParseUint(dev[1], 16, 32)
		ino, err3 := strconv.ParseUint(dev[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		l.Major, l.Minor, l.Inode = uint32(major), uint32(minor), ino
		out = append(out, l)
	}
	return out
}
