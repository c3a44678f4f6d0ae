//go:build !linux

package probe

import "errors"

// ProcNetAvailable is false off Linux: listening is probed by connecting.
func ProcNetAvailable() bool { return false }

// Listeners is not available without /proc.
func Listeners() (map[int][]uint64, error) {
	return nil, errors.New("socket tables are only read on Linux")
}

// SocketOwners is not available without /proc.
func SocketOwners(map[uint64]bool) map[uint64][]int { return map[uint64][]int{} }

// EphemeralRange on macOS and the BSDs defaults to the IANA dynamic range.
func EphemeralRange() (lo, hi int, err error) { return 49152, 65535, nil }
