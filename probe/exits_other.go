//go:build !linux

package probe

import "errors"

// ExitWatch is Linux-only (pidfds); elsewhere NewExitWatch fails and the
// watchdog sees deaths at its cycles.
type ExitWatch struct{}

// ErrExitWatchUnsupported means there are no pidfds here.
var ErrExitWatchUnsupported = errors.New("process exits are only watched on Linux (pidfd)")

// ErrOwnerUnknown means the process cannot be looked at from here.
var ErrOwnerUnknown = errors.New("the process cannot be looked at from here")

// NewExitWatch fails off Linux.
func NewExitWatch() (*ExitWatch, error) { return nil, ErrExitWatchUnsupported }

// Exited never delivers.
func (w *ExitWatch) Exited() <-chan Identity { return nil }

// Watching is always false.
func (w *ExitWatch) Watching(Identity) bool { return false }

// Watch does nothing.
func (w *ExitWatch) Watch(Identity) (bool, error) { return true, ErrExitWatchUnsupported }

// Forget does nothing.
func (w *ExitWatch) Forget(Identity) {}

// Close does nothing.
func (w *ExitWatch) Close() {}

// RaiseFileLimit leaves the limit as it is.
func RaiseFileLimit() uint64 { return 0 }
