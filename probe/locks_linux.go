package probe

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FlockHolders returns the processes, by PID in this /proc's view, that
// hold an exclusive flock(2) lock on the file info describes (an lstat of
// it), as the kernel lists them in /proc/locks; waiters hold nothing. A
// lock names its file by device and inode. Where the device differs from
// the one stat gave (overlayfs reports its own), a holder counts only if
// it has the file open (/proc/PID/fd), which can be looked at for this
// user's processes, or by root.
func FlockHolders(info fs.FileInfo) ([]int, error) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, ErrNoLockTable
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, l := range ParseProcLocks(data) {
		if l.Kind != "FLOCK" || l.Waiting || !l.Write || l.PID <= 0 || l.Inode != uint64(st.Ino) {
			continue
		}
		if (l.Major == unix.Major(uint64(st.Dev)) && l.Minor == unix.Minor(uint64(st.Dev))) || hasOpen(l.PID, st) {
			out = append(out, l.PID)
		}
	}
	return out, nil
}

// hasOpen reports whether process pid has the file st describes open.
func hasOpen(pid int, st *syscall.Stat_t) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		var fst syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, e.Name()), &fst) == nil && fst.Ino == st.Ino && fst.Dev == st.Dev {
			return true
		}
	}
	return false
}

// ExecutableIs reports whether process pid (in this /proc's view) runs the
// program called name, or this very binary. The kernel says which file it
// executes (/proc/PID/exe, " (deleted)" once the binary was replaced by an
// upgrade); where this user may not look at that (another user's process),
// the command name the kernel recorded at exec (/proc/PID/stat) is taken.
// Neither can be set by a process that execs a setuid program: only its
// own, which the caller could signal anyway.
func ExecutableIs(pid int, name string) bool {
	p := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(p + "/exe")
	if err != nil {
		if !os.IsPermission(err) {
			return false
		}
		stat, err := os.ReadFile(p + "/stat")
		i, j := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		return err == nil && i >= 0 && j > i && string(stat[i+1:j]) == commName(name)
	}
	if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == name {
		return true
	}
	var self, other syscall.Stat_t
	return syscall.Stat("/proc/self/exe", &self) == nil && syscall.Stat(p+"/exe", &other) == nil &&
		self.Dev == other.Dev && self.Ino == other.Ino
}

// commName is name as the kernel keeps a command name: 15 bytes at most.
func commName(name string) string {
	if len(name) > 15 {
		return name[:15]
	}
	return name
}

// Signal sends sig to the process id names, and to no other: the process is
// pinned with a pidfd before its start time is checked, so a PID reused
// meanwhile is never signalled. ErrNoProcess if id no longer runs.
func Signal(id Identity, sig syscall.Signal) error {
	local, l := Resolve(id)
	if l != Running {
		return ErrNoProcess
	}
	fd, err := unix.PidfdOpen(local, 0)
	if err != nil {
		if err == unix.ESRCH {
			return ErrNoProcess
		}
		return signalByPID(id, local, sig)
	}
	defer unix.Close(fd)
	if start, err := processStart(local); err != nil || (id.Start != 0 && start != id.Start) {
		return ErrNoProcess
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if err == unix.ESRCH {
			return ErrNoProcess
		}
		return err
	}
	return nil
}
