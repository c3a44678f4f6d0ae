package probe

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// processStart reads field 22 (starttime, clock ticks since boot) of
// /proc/PID/stat. The command name in field 2 may hold spaces and
// parentheses, so the fields are counted from after the last ')'.
func processStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
			return 0, ErrNoProcess
		}
		return 0, err
	}
	return ParseStatStart(data)
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

func readBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
