//go:build !linux

package registry

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// ChmodNoFollow sets the mode of path without following a link at its last
// component (fchmodat with AT_SYMLINK_NOFOLLOW).
func ChmodNoFollow(path string, mode fs.FileMode) error {
	if err := unix.Fchmodat(unix.AT_FDCWD, path, uint32(mode.Perm()), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "chmod", Path: path, Err: err}
	}
	return nil
}
