package probe

import (
	"errors"
	"fmt"
	"os"
)

// ReservedPortsFile is net.ipv4.ip_local_reserved_ports: ports the kernel
// never hands to an outgoing connection or a bind to port 0 (in the
// network namespace of the process that opens it; it applies to IPv6 as
// well).
const ReservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// ReservedPorts reads the kernel's reserved ports of this network namespace.
func ReservedPorts() (PortList, error) {
	data, err := os.ReadFile(ReservedPortsFile)
	if err != nil {
		return nil, err
	}
	return ParsePortList(string(data))
}

// ErrReservedChanged means the reserved list changed while it was being
// rewritten, every time it was tried.
var ErrReservedChanged = errors.New("net.ipv4.ip_local_reserved_ports kept changing while it was rewritten")

// ChangeReservedPorts rewrites the reserved list as change makes it from
// what is there, and returns the list before and after. The kernel
// replaces the whole list on each write and offers no lock, so the list is
// read again after the write: if another writer changed it meanwhile, the
// change is made again on what is there now (3 tries).
func ChangeReservedPorts(change func(PortList) PortList) (before, after PortList, err error) {
	for range 3 {
		if before, err = ReservedPorts(); err != nil {
			return nil, nil, err
		}
		after = change(before)
		if after.String() == before.String() {
			return before, after, nil
		}
		if err := writeReserved(after); err != nil {
			return nil, nil, err
		}
		now, err := ReservedPorts()
		if err != nil {
			return nil, nil, err
		}
		if now.String() == after.String() {
			return before, after, nil
		}
	}
	return nil, nil, ErrReservedChanged
}

func writeReserved(l PortList) error {
	f, err := os.OpenFile(ReservedPortsFile, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	// The kernel parses one write; an empty list is written as "\n".
	_, werr := f.WriteString(l.String() + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("writing %s: %w", ReservedPortsFile, werr)
	}
	return nil
}
