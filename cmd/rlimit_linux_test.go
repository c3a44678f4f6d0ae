package cmd_test

import "golang.org/x/sys/unix"

// lowerOpenFileLimit sets another process's open-file limit (prlimit(2)).
func lowerOpenFileLimit(pid int, limit uint64) error {
	return unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil)
}
