package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Parsers of /proc text. They are portable so they are tested and fuzzed on
// every platform.

// ParseProcNetTCP calls fn for each LISTEN socket (state 0A) in the text of
// /proc/net/tcp or /proc/net/tcp6.
func ParseProcNetTCP(r io.Reader, fn func(port int, inode uint64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if f[3] != "0A" {
			continue
		}
		_, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			return fmt.Errorf("malformed local address %q", f[1])
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			return fmt.Errorf("malformed port %q", portHex)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return fmt.Errorf("malformed inode %q", f[9])
		}
		fn(int(port), inode)
	}
	return sc.Err()
}

// ParseStatStart extracts the start time from the contents of /proc/PID/stat.
func ParseStatStart(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat: no ')'")
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(fields))
	}
	if fields[0] == "Z" || fields[0] == "X" {
		// A zombie has exited; only its parent's wait keeps it in the table.
		return 0, ErrNoProcess
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
