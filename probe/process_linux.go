package probe

import (
	"errors"
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

func readBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
