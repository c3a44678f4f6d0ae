package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is an flock(2) lock on a lock file in the registry folder. The file
// is opened once, through openNoFollow (no link, no FIFO, a regular file),
// and locked on that very descriptor: nothing is opened again by name
// between the check and the lock.
type Lock struct{ f *os.File }

// NewLock opens path, a lock file in the registry folder: made with the
// registry's lock mode if missing, tightened to it (on the descriptor) if
// this user owns a looser one. It does not lock it yet.
func (s *Store) NewLock(path string) (*Lock, error) {
	_, perm := s.modes()
	f, err := openNoFollow(path, os.O_RDONLY|os.O_CREATE, perm)
	if err != nil {
		return nil, lockOpenErr(path, err)
	}
	info, err := f.Stat()
	if err == nil && info.Mode().Perm() != perm && ownedBySelf(info) {
		err = f.Chmod(perm)
	}
	if err != nil {
		f.Close()
		return nil, lockOpenErr(path, err)
	}
	return &Lock{f: f}, nil
}

// Path is the lock file's name.
func (l *Lock) Path() string { return l.f.Name() }

// TryLock takes the lock exclusively if nobody holds it, without waiting.
func (l *Lock) TryLock() (bool, error) { return l.try(unix.LOCK_EX) }

func (l *Lock) try(how int) (bool, error) {
	for {
		err := unix.Flock(int(l.f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		}
		return false, lockOpenErr(l.Path(), err)
	}
}

// TryLockShared takes the lock shared if nobody holds it exclusively,
// without waiting.
func (l *Lock) TryLockShared() (bool, error) { return l.try(unix.LOCK_SH) }

// Wait takes the lock exclusively, waiting at most timeout or until ctx
// ends. On any error the Lock is closed.
func (l *Lock) Wait(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	return l.wait(ctx, min(timeout/4, 250*time.Millisecond), func(now time.Time) error {
		if now.After(deadline) {
			return &LockError{Path: l.Path(), Timeout: timeout}
		}
		return nil
	})
}

// wait takes the lock exclusively. flock is taken by a blocking call in a
// goroutine, so a waiter is woken the moment the holder unlocks instead of
// polling; every tick giveUp is asked whether to stop waiting (it returns
// the error to stop with), and ctx's end stops it too. If the wait is
// given up, the goroutine closes the file (releasing the lock) as soon as
// it gets it. On any error the Lock is closed.
func (l *Lock) wait(ctx context.Context, tick time.Duration, giveUp func(now time.Time) error) error {
	ok, err := l.TryLock()
	if err != nil || ok {
		if err != nil {
			l.Close()
		}
		return err
	}
	done := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(l.f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	look := time.NewTicker(tick)
	defer look.Stop()
	for err == nil {
		select {
		case err := <-done:
			if err != nil {
				l.Close()
				return lockOpenErr(l.Path(), err)
			}
			return nil
		case <-ctx.Done():
			err = &InterruptedError{Path: l.Path(), Err: ctx.Err()}
		case now := <-look.C:
			err = giveUp(now)
		}
	}
	go func() {
		<-done
		l.Close()
	}()
	return err
}

// InterruptedError is a wait for the lock cut short (SIGINT, SIGTERM).
type InterruptedError struct {
	Path string
	Err  error // the context's error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("stopped by a signal while waiting for the registry lock %s; nothing was changed", e.Path)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// Close releases the lock (if held) and closes the file.
func (l *Lock) Close() error { return l.f.Close() }

// LockError is returned when the lock could not be taken in time.
type LockError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockError) Error() string {
	return fmt.Sprintf("timed out waiting for the registry lock %s: another gracectl has held it for %s without finishing a change", e.Path, e.Timeout)
}

// lock takes the registry lock. The wait gives up after s.LockTimeout
// without progress: every change replaces the registry file, so while its
// stamp keeps changing the writers ahead are getting through (a burst of
// hundreds of allocations queues longer than the timeout, and none of them
// is stuck); only a holder that keeps the lock that long without finishing
// a change times the wait out. Only writers lock: readers read the file,
// which is only ever replaced whole by a rename.
func (s *Store) lock(ctx context.Context) (*Lock, error) {
	if err := s.EnsureDir(); err != nil {
		return nil, fmt.Errorf("cannot create registry folder: %w", err)
	}
	fl, err := s.NewLock(s.LockPath())
	if err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, fl); err != nil {
		return nil, err
	}
	return fl, nil
}

// waitFor takes fl exclusively, giving up as lock says. On any error fl is
// closed.
func (s *Store) waitFor(ctx context.Context, fl *Lock) error {
	stamp, progress := FileStamp(s.Path()), time.Now()
	return fl.wait(ctx, min(s.LockTimeout/4, 250*time.Millisecond), func(now time.Time) error {
		if st := FileStamp(s.Path()); st != stamp {
			stamp, progress = st, now
		} else if now.Sub(progress) >= s.LockTimeout {
			return &LockError{Path: s.LockPath(), Timeout: s.LockTimeout}
		}
		return nil
	})
}

// HeldLock is the registry lock of a long-lived process that changes the
// registry many times a second (the portserver's pool): the lock file is
// kept open between changes and unlocked, not closed, after each, so a
// change costs no open of it and no walk of the registry's folders. It is
// opened again when the file at the lock's path is no longer the one held
// (the folder was removed or replaced): every other process locks what is
// at that path.
//
// flock excludes open files, not the users of one: the process's own
// turns are taken one at a time here.
type HeldLock struct {
	turn chan struct{}
	l    *Lock
	info fs.FileInfo
}

// NewHeldLock returns a HeldLock, not yet open.
func NewHeldLock() *HeldLock { return &HeldLock{turn: make(chan struct{}, 1)} }

// Close closes the lock file; the next change opens it again.
func (h *HeldLock) Close() {
	h.turn <- struct{}{}
	defer func() { <-h.turn }()
	h.drop()
}

func (h *HeldLock) drop() {
	if h.l != nil {
		h.l.Close()
	}
	h.l, h.info = nil, nil
}

// lockHeld takes the registry lock through h, as lock does; unlock gives
// it back and leaves the file open.
func (s *Store) lockHeld(ctx context.Context, h *HeldLock) (unlock func(), err error) {
	select {
	case h.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, &InterruptedError{Path: s.LockPath(), Err: ctx.Err()}
	}
	defer func() {
		if err != nil {
			h.l, h.info = nil, nil // wait closed it
			<-h.turn
		}
	}()
	if h.l != nil {
		if info, err := os.Lstat(s.LockPath()); err != nil || !os.SameFile(info, h.info) {
			h.drop()
		}
	}
	if h.l == nil {
		if err := s.EnsureDir(); err != nil {
			return nil, fmt.Errorf("cannot create registry folder: %w", err)
		}
		l, err := s.NewLock(s.LockPath())
		if err != nil {
			return nil, err
		}
		info, err := l.f.Stat()
		if err != nil {
			l.Close()
			return nil, lockOpenErr(s.LockPath(), err)
		}
		h.l, h.info = l, info
	}
	if err := s.waitFor(ctx, h.l); err != nil {
		return nil, err
	}
	return func() {
		if unix.Flock(int(h.l.f.Fd()), unix.LOCK_UN) != nil {
			h.drop() // closing it unlocks it
		}
		<-h.turn
	}, nil
}

// acquire takes the registry lock: through held if set, else on a lock
// file opened for this change alone.
func (s *Store) acquire(ctx context.Context, held *HeldLock) (unlock func(), err error) {
	if held != nil {
		return s.lockHeld(ctx, held)
	}
	fl, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	return func() { fl.Close() }, nil
}

func lockOpenErr(path string, err error) error {
	return fmt.Errorf("cannot lock %s: %w", path, err)
}
