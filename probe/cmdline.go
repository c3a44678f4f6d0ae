package probe

import (
	"bytes"
	"os"
	"strconv"
)

// Cmdline returns pid's command line, from /proc/PID/cmdline on Linux, or
// just its executable name where that is not available.
func Cmdline(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err == nil && len(data) > 0 {
		parts := bytes.Split(bytes.TrimRight(data, "\x00"), []byte{0})
		out := make([]string, len(parts))
		for i, p := range parts {
			out[i] = string(p)
		}
		return out
	}
	if name := ProcessName(pid); name != "" {
		return []string{name}
	}
	return nil
}
