//go:build !linux

package probe

import "errors"

var errNoSocketTables = errors.New("socket tables are only read on Linux")

// SocketsOnPort is not available without /proc and sock_diag.
func SocketsOnPort(int) ([]Socket, error) { return nil, errNoSocketTables }

// SocketsOnPortIn is not available without /proc.
func SocketsOnPortIn(int, int) ([]Socket, error) { return nil, errNoSocketTables }

// OtherNetNamespaces: there are none to look into here.
func OtherNetNamespaces() map[uint64]int { return map[uint64]int{} }

// ListenersOn is not available without /proc and sock_diag.
func ListenersOn(int) ([]Socket, error) { return nil, errNoSocketTables }
