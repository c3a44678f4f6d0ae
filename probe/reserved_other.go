//go:build !linux

package probe

import "errors"

// ReservedPortsFile is Linux's; other systems have no reserved list.
const ReservedPortsFile = ""

// ErrReservedChanged is Linux's.
var ErrReservedChanged = errors.New("the reserved list kept changing")

var errNoReserved = errors.New("the kernel's reserved ports (net.ipv4.ip_local_reserved_ports) are a Linux feature")

// ReservedPorts is not available off Linux.
func ReservedPorts() (PortList, error) { return nil, errNoReserved }

// ChangeReservedPorts is not available off Linux.
func ChangeReservedPorts(func(PortList) PortList) (PortList, PortList, error) {
	return nil, nil, errNoReserved
}
