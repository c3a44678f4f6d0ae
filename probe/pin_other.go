//go:build !linux

package probe

import (
	"errors"
	"syscall"
	"time"
)

// Pinned is Linux's (pidfds); elsewhere no process is pinned.
type Pinned struct{ PID int }

// ErrNotSame means the PID names another process than the one expected.
var ErrNotSame = errors.New("the process is gone (its PID now names another one)")

var errNoPidfd = errors.New("processes are stopped only where pidfds pin them (Linux)")

// Pin is not available without pidfds: a process gracectl cannot pin is
// never signalled.
func Pin(int, uint64) (*Pinned, error) { return nil, errNoPidfd }

// Signal is not available without pidfds.
func (p *Pinned) Signal(syscall.Signal) error { return errNoPidfd }

// Close does nothing here.
func (p *Pinned) Close() {}

// WaitExits is not available without pidfds.
func WaitExits(ps []*Pinned, _ time.Duration) []*Pinned { return ps }
