package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// ProcNetAddr is an address as /proc/net/tcp (for IPv4) or /proc/net/tcp6
// prints it: the address's 32-bit words in the host's byte order, then the
// port, in hex.
func ProcNetAddr(ap netip.AddrPort) string {
	var b strings.Builder
	raw := ap.Addr().AsSlice()
	for i := 0; i+4 <= len(raw); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(raw[i:]))
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}
