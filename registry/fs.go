package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Nothing under a state root is followed through a symbolic link: another
// user who can plant a link there must not make gracectl write, create or
// read a file elsewhere (an audit line appended to a root-only file, a lock
// created at a path of their choosing). Folders are checked component by
// component with Lstat and created with Mkdir; files are opened with
// O_NOFOLLOW; temp files are created with O_EXCL, which never follows a
// link; renames replace a link instead of following it.

// LinkError is a symbolic link where gracectl keeps its state.
type LinkError struct{ Path string }

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link; gracectl does not follow links in its state folder (remove it, or point --root at the real folder)", e.Path)
}

// ensureDir makes root/rel a real folder, creating what is missing with
// mode perm (the setgid bit of a shared registry is inherited from root's
// folders). Every component under root must be a folder, not a link; root
// itself is made with MkdirAll if missing.
func ensureDir(root, rel string, perm fs.FileMode) error {
	// The root itself is the user's choice, links and all.
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	return walkDir(root, rel, func(path string) error {
		if err := os.Mkdir(path, perm); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return checkDir(path)
			}
			return err
		}
		return nil
	})
}

// checkDirs verifies that every component of root/rel that exists is a
// real folder; a missing one is not an error.
func checkDirs(root, rel string) error { return walkDir(root, rel, nil) }

// walkDir checks each component of root/rel: a folder, not a link. A
// missing one is made by mkdir, or, with mkdir nil, ends the walk.
func walkDir(root, rel string, mkdir func(string) error) error {
	path := root
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		if part == "" {
			continue
		}
		path = filepath.Join(path, part)
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			if mkdir == nil {
				return nil
			}
			if err := mkdir(path); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := dirOnly(path, info); err != nil {
			return err
		}
	}
	return nil
}

func checkDir(path string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return dirOnly(path, info)
}

func dirOnly(path string, info fs.FileInfo) error {
	if info.Mode()&fs.ModeSymlink != 0 {
		return &LinkError{Path: path}
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a folder", path)
	}
	return nil
}

// openNoFollow opens a file under a state root: never through a link at
// its last component (O_NOFOLLOW; the folders above were checked by the
// caller), never waiting on a FIFO or a device (O_NONBLOCK), and only if
// the descriptor it got is a regular file (fstat). Anything else is a
// LinkError or a NotRegularError: a FIFO planted in place of the registry
// would otherwise hang every command, holding the lock.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, perm)
	if err != nil {
		switch {
		case isLinkErr(err):
			return nil, &LinkError{Path: path}
		case errors.Is(err, syscall.ENXIO):
			// A FIFO without a reader, opened for writing.
			if info, lerr := os.Lstat(path); lerr == nil && !info.Mode().IsRegular() {
				return nil, &NotRegularError{Path: path, Mode: info.Mode()}
			}
		}
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: info.Mode()}
	}
	return f, nil
}

// NotRegularError is something other than a regular file (a FIFO, a
// socket, a device, a folder) where gracectl keeps one of its files.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	kind := "not a regular file"
	switch t := e.Mode.Type(); {
	case t&fs.ModeNamedPipe != 0:
		kind = "a FIFO (named pipe)"
	case t&fs.ModeSocket != 0:
		kind = "a socket"
	case t&fs.ModeDevice != 0:
		kind = "a device"
	case t&fs.ModeDir != 0:
		kind = "a folder"
	}
	return fmt.Sprintf("%s is %s, not a regular file; gracectl opens only regular files in its state folder (move it aside)", e.Path, kind)
}

// isLinkErr reports the errno of O_NOFOLLOW meeting a link: ELOOP on
// Linux, EMLINK on some BSDs.
func isLinkErr(err error) bool {
	return errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK)
}

// MaxFileSize bounds what gracectl reads whole from its state folder: far
// more than any registry or state file it writes (a full 65,535-port
// registry is about 40 MiB), so a planted or runaway file is an error, not
// an exhausted memory.
const MaxFileSize = 64 << 20

// ReadFile reads a regular file under a state root without following a
// link (openNoFollow). It returns the file's own FileInfo.
func ReadFile(path string) ([]byte, fs.FileInfo, error) {
	data, _, info, err := readFileUnlessSame(path, nil)
	return data, info, err
}

// readFileUnlessSame is ReadFile for a caller that holds earlier contents
// of the file, prev: if the file holds exactly those bytes, it is compared
// through a small buffer and only same is returned, not a second copy.
func readFileUnlessSame(path string, prev []byte) (data []byte, same bool, info fs.FileInfo, err error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, false, nil, err
	}
	defer f.Close()
	if info, err = f.Stat(); err != nil {
		return nil, false, nil, err
	}
	if info.Size() > MaxFileSize {
		return nil, false, nil, fmt.Errorf("%s is %d bytes, more than any file gracectl writes (%d); move it aside", path, info.Size(), MaxFileSize)
	}
	if prev != nil && info.Size() == int64(len(prev)) {
		if same, err = readsAs(f, prev); err != nil || same {
			return nil, same, info, err
		}
		if _, err = f.Seek(0, io.SeekStart); err != nil {
			return nil, false, nil, err
		}
	}
	// Sized from the file (plus room to see the end, as os.ReadFile does):
	// io.ReadAll's doublings cost a registry of 5,000 allocations a dozen
	// copies and their fresh pages.
	buf := bytes.NewBuffer(make([]byte, 0, info.Size()+bytes.MinRead))
	_, err = buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	if err == nil && buf.Len() > MaxFileSize {
		err = fmt.Errorf("%s grew past %d bytes while being read", path, MaxFileSize)
	}
	return buf.Bytes(), false, info, err
}

// readsAs reports whether r holds exactly want, to its end.
func readsAs(r io.Reader, want []byte) (bool, error) {
	buf := make([]byte, 64<<10)
	for len(want) > 0 {
		n := min(len(buf), len(want))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return false, nil
			}
			return false, err
		}
		if !bytes.Equal(buf[:n], want[:n]) {
			return false, nil
		}
		want = want[n:]
	}
	n, err := r.Read(buf[:1])
	if n > 0 {
		return false, nil // the file grew
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return true, nil
}

// ReadFileFrom reads a regular file under a state root, without following
// a link, from byte off to its end; a negative off counts from the end (at
// most the whole file). It returns the bytes and where they end (the
// file's size).
func ReadFileFrom(path string, off int64) ([]byte, int64, error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := info.Size()
	if off < 0 {
		off = max(size+off, 0)
	}
	if off >= size {
		return nil, size, nil
	}
	data := make([]byte, size-off)
	n, err := f.ReadAt(data, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	return data[:n], off + int64(n), nil
}

// FileStamp identifies a file's current contents without reading it:
// gracectl only ever replaces its files whole by a rename, so a new inode,
// size or mtime means new contents. "-" when the file does not exist.
func FileStamp(path string) string {
	info, err := os.Lstat(path)
	if err != nil {
		return "-"
	}
	var ino uint64
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		ino = uint64(st.Ino)
	}
	return fmt.Sprintf("%d/%d/%d", ino, info.Size(), info.ModTime().UnixNano())
}
