//go:build !linux

package cmd_test

import "errors"

// lowerOpenFileLimit: prlimit(2) is Linux's; elsewhere the test skips.
func lowerOpenFileLimit(pid int, limit uint64) error {
	return errors.New("prlimit is Linux only")
}
