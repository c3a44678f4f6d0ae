package registry

import (
	"io/fs"
	"strconv"

	"golang.org/x/sys/unix"
)

// ChmodNoFollow sets the mode of path, which may be any kind of file (a
// socket included), through a descriptor opened without following a link
// (O_PATH|O_NOFOLLOW): a link put in its place meanwhile is refused, never
// followed. The mode is set through /proc/self/fd, as glibc's
// fchmodat(AT_SYMLINK_NOFOLLOW) does, since fchmod does not take O_PATH
// descriptors.
func ChmodNoFollow(path string, mode fs.FileMode) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &LinkError{Path: path}
	}
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), uint32(mode.Perm())); err != nil {
		return &fs.PathError{Op: "chmod", Path: path, Err: err}
	}
	return nil
}
