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
	return procNetLines(r, func(f []string) error {
		if f[3] != "0A" {
			return nil
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
		return nil
	})
}

// procNetLines calls fn with the fields of each socket line of a
// /proc/net/{tcp,udp}{,6} table (the header skipped, and lines of fewer
// than ten fields), until fn fails.
func procNetLines(r io.Reader, fn func(fields []string) error) error {
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
		if err := fn(f); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Stat is what gracectl reads of /proc/PID/stat.
type Stat struct {
	Comm   string // field 2, the executable name (at most 15 bytes)
	State  byte   // field 3
	PPID   int    // field 4
	Flags  uint64 // field 9 (PF_KTHREAD marks a kernel thread)
	Start  uint64 // field 22, clock ticks since boot
	Zombie bool   // state Z or X: exited, kept only until its parent waits
}

// ParseStat reads the fields of Stat from the contents of /proc/PID/stat.
// The command name may hold spaces and parentheses, so it runs from the
// first '(' to the last ')' and the fields are counted after that.
func ParseStat(data []byte) (Stat, error) {
	i, j := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if i < 0 || j < i {
		return Stat{}, fmt.Errorf("malformed /proc stat: no (name)")
	}
	// fields[0] is field 3 (state); field 22 is fields[19]. Only the first
	// 20 are split off.
	fields := strings.SplitN(strings.TrimLeft(string(data[j+1:]), " "), " ", 21)
	if len(fields) < 20 || len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("malformed /proc stat: %d fields after the name", len(fields))
	}
	st := Stat{Comm: string(data[i+1 : j]), State: fields[0][0]}
	st.Zombie = st.State == 'Z' || st.State == 'X'
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: ppid %q", fields[1])
	}
	st.PPID = ppid
	if st.Flags, err = strconv.ParseUint(fields[6], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: flags %q", fields[6])
	}
	if st.Start, err = strconv.ParseUint(strings.TrimSpace(fields[19]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: start time %q", fields[19])
	}
	return st, nil
}

// ParseStatStart extracts the start time from the contents of
// /proc/PID/stat; a zombie is ErrNoProcess.
func ParseStatStart(data []byte) (uint64, error) {
	st, err := ParseStat(data)
	if err != nil {
		return 0, err
	}
	if st.Zombie {
		return 0, ErrNoProcess
	}
	return st.Start, nil
}

// TCPSocket is what the kernel tells of one TCP socket: the user who made
// it and the bytes waiting in its queues.
type TCPSocket struct {
	UID    uint32
	RQueue uint32 // received, not yet read by its process
	WQueue uint32 // written, not yet acknowledged by the other end
}

// ParseProcNetTCPSocket finds the socket with local address local and
// remote address remote in the text of /proc/net/tcp or /proc/net/tcp6
// (addresses as the kernel prints them: see ProcNetAddr).
func ParseProcNetTCPSocket(r io.Reader, local, remote string) (TCPSocket, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[1] != local || f[2] != remote {
			continue
		}
		tx, rx, ok := strings.Cut(f[4], ":")
		w, err1 := strconv.ParseUint(tx, 16, 32)
		rq, err2 := strconv.ParseUint(rx, 16, 32)
		uid, err3 := strconv.ParseUint(f[7], 10, 32)
		if !ok || err1 != nil || err2 != nil || err3 != nil {
			return TCPSocket{}, false, fmt.Errorf("malformed socket line %q", sc.Text())
		}
		return TCPSocket{UID: uint32(uid), RQueue: uint32(rq), WQueue: uint32(w)}, true, nil
	}
	return TCPSocket{}, false, sc.Err()
}
