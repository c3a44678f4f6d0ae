package probe

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// ExitWatch tells, within moments, when watched processes end: it holds a
// pidfd (pidfd_open) for each and waits on all of them with one epoll, so
// one thread serves any number. A pidfd becomes readable when its process
// exits.
type ExitWatch struct {
	epfd   int
	wake   int // eventfd that ends the wait on Close
	exited chan Identity

	mu     sync.Mutex
	byFD   map[int32]Identity
	fdOf   map[Identity]int
	closed bool
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when loop returns
}

// ErrExitWatchUnsupported means this kernel (before 5.3) or platform has
// no pidfds; deaths are then seen by the watchdog's cycles only.
var ErrExitWatchUnsupported = errors.New("pidfd_open is not available")

// ErrOwnerUnknown means the process cannot be looked at from here (its PID
// namespace cannot be looked into): it is not watched.
var ErrOwnerUnknown = errors.New("the process cannot be looked at from here")

// NewExitWatch starts watching no process.
func NewExitWatch() (*ExitWatch, error) {
	// Probe for pidfd_open with our own PID.
	fd, err := unix.PidfdOpen(unix.Getpid(), 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return nil, ErrExitWatchUnsupported
		}
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	unix.Close(fd)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	w := &ExitWatch{epfd: epfd, wake: wake, exited: make(chan Identity, 256),
		byFD: map[int32]Identity{}, fdOf: map[Identity]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w, nil
}

// Exited delivers the identity of each watched process that ended, once.
func (w *ExitWatch) Exited() <-chan Identity { return w.exited }

// Watching reports whether id is being watched.
func (w *ExitWatch) Watching(id Identity) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.fdOf[id]
	return ok
}

// Watch starts watching id and reports whether it is alive: a process
// that has already ended (or whose PID now names another process) is not
// watched, and Watch returns false. An error (EMFILE: out of file
// descriptors) means it is not watched.
func (w *ExitWatch) Watch(id Identity) (alive bool, err error) {
	w.mu.Lock()
	if _, ok := w.fdOf[id]; ok || w.closed {
		w.mu.Unlock()
		return true, nil
	}
	w.mu.Unlock()
	local, l := Resolve(id) // its PID here, if it lives in another PID namespace
	switch l {
	case Dead:
		return false, nil
	case Unknown:
		return true, ErrOwnerUnknown
	}
	fd, err := unix.PidfdOpen(local, 0)
	if errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	// The PID may have been reused before the pidfd was opened: the pidfd
	// is for whatever process holds the PID now, so check it is id.
	if again, l := Resolve(id); l != Running || again != local {
		unix.Close(fd)
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		unix.Close(fd)
		return true, nil
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return true, err
	}
	w.byFD[int32(fd)] = id
	w.fdOf[id] = fd
	return true, nil
}

// Forget stops watching id.
func (w *ExitWatch) Forget(id Identity) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fd, ok := w.fdOf[id]; ok {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		delete(w.fdOf, id)
		delete(w.byFD, int32(fd))
	}
}

// Close stops the watch and releases every pidfd.
func (w *ExitWatch) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.stop)
	w.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(w.wake, one[:])
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for fd := range w.byFD {
		unix.Close(int(fd))
	}
	w.byFD, w.fdOf = nil, nil
	unix.Close(w.epfd)
	unix.Close(w.wake)
}

func (w *ExitWatch) loop() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		var ended []Identity
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == w.wake {
				continue
			}
			id, ok := w.byFD[ev.Fd]
			if !ok {
				continue
			}
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			unix.Close(int(ev.Fd))
			delete(w.byFD, ev.Fd)
			delete(w.fdOf, id)
			ended = append(ended, id)
		}
		w.mu.Unlock()
		for _, id := range ended {
			select {
			case w.exited <- id:
			case <-w.stop:
				return
			}
		}
	}
}

// RaiseFileLimit raises the soft limit on open files to the hard limit
// (each watched process costs one) and returns the limit now in force.
func RaiseFileLimit() uint64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}
