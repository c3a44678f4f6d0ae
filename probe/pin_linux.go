package probe

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Pinned is a process held by a pidfd: a signal sent through it reaches
// that process and no other, however soon its PID is reused, and its exit
// is seen by waiting on the descriptor, not by polling the PID.
type Pinned struct {
	PID int // in this /proc's view
	fd  int
}

// ErrNotSame means the PID names another process than the one expected
// (its start time differs): the one expected is gone.
var ErrNotSame = errors.New("the process is gone (its PID now names another one)")

// Pin opens a pidfd for process pid (in this /proc's view) and checks,
// after opening it, that pid still started at start: a process that can
// not be identified so (start 0, gone) is never pinned.
func Pin(pid int, start uint64) (*Pinned, error) {
	if pid <= 0 || start == 0 {
		return nil, ErrNoProcess
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, ErrNoProcess
		}
		return nil, err
	}
	if now, err := processStart(pid); err != nil || now != start {
		unix.Close(fd)
		return nil, ErrNotSame
	}
	return &Pinned{PID: pid, fd: fd}, nil
}

// Signal sends sig to the pinned process; ErrNoProcess once it has exited.
func (p *Pinned) Signal(sig syscall.Signal) error {
	if err := unix.PidfdSendSignal(p.fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrNoProcess
		}
		return err
	}
	return nil
}

// Close releases the pidfd.
func (p *Pinned) Close() { unix.Close(p.fd) }

// WaitExits waits until every process of ps has exited, or d has passed,
// and returns those still running. A pidfd becomes readable when its
// process exits, so this is one poll(2), woken by the exits themselves.
func WaitExits(ps []*Pinned, d time.Duration) []*Pinned {
	deadline := time.Now().Add(d)
	running := ps
	for len(running) > 0 {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := make([]unix.PollFd, len(running))
		for i, p := range running {
			fds[i] = unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN}
		}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return running
		}
		var still []*Pinned
		for i, p := range running {
			if fds[i].Revents == 0 {
				still = append(still, p)
			}
		}
		running = still
		if n == 0 && left == 0 {
			break
		}
	}
	return running
}
