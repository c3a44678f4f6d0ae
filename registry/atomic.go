package registry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces path with data so that a reader or a crash sees
// either the old file or the new one, whole. The temp file is created with
// O_EXCL in the same folder (a rename across file systems is not atomic),
// given the old file's permissions and owner, synced, closed and renamed
// over path; then the folder is synced so the rename itself is durable. On
// any error the temp file is removed and path is untouched.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode, old fs.FileInfo) error {
	return writeFileAtomicOpts(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, perm, old, true, true)
}

// writeFileAtomicOpts is WriteFileAtomic with the contents written by
// write, which may write in pieces, and with a choice of what to sync:
// without syncFile the contents are left to the kernel's writeback (the
// rename still replaces the file whole for every reader); without
// syncFolder the caller syncs the folder itself (syncDir) before it calls
// the change durable.
func writeFileAtomicOpts(path string, write func(io.Writer) error, perm fs.FileMode, old fs.FileInfo, syncFile, syncFolder bool) error {
	return systemErr(writeAtomic(path, write, perm, old, syncFile, syncFolder))
}

// systemErr reduces a failed write to what the system said (its errno,
// "no space left on device"), without the wrapping it came in (a temp
// file's name, the JSON encoder's "jsontext: write error"), and says what
// to do about a full disk or quota. Other errors pass as they are.
func systemErr(err error) error {
	var errno syscall.Errno
	if err == nil || !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.ENOSPC:
		return fmt.Errorf("%w: the file system is full; free some space and try again", errno)
	case syscall.EDQUOT:
		return fmt.Errorf("%w: free some space or raise the quota and try again", errno)
	}
	return errno
}

func writeAtomic(path string, write func(io.Writer) error, perm fs.FileMode, old fs.FileInfo, syncFile, syncFolder bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Through a buffer: the JSON encoder hands over a few KB at a time,
	// which would be a write call each (a thousand for 5,000 allocations).
	bw := bufio.NewWriterSize(f, 128<<10)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; a registry that turned 0600 would lock
	// other users out.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if old != nil {
		if st, ok := old.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			_ = f.Chown(int(st.Uid), int(st.Gid))
		}
	}
	if syncFile {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if !syncFolder {
		return nil
	}
	return syncDir(dir)
}

// syncDir fsyncs a folder, opened as one (O_DIRECTORY: a FIFO or a link
// in its place is an error, never a wait).
func syncDir(dir string) error {
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isUnsupportedSync(err) {
		return err
	}
	return nil
}

func isUnsupportedSync(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP)
}
