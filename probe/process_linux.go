package probe

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// readProcessTable fills t in one pass over /proc/*/stat: a process that
// ends meanwhile is simply absent.
func readProcessTable(t *ProcessTable) {
	dir, err := os.Open("/proc")
	if err != nil {
		return
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return
	}
	buf := make([]byte, 1024)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		data, ok := readSmall("/proc/"+n+"/stat", buf)
		if !ok {
			continue
		}
		st, err := ParseStat(data)
		if err != nil {
			continue
		}
		t.parent[pid], t.name[pid] = st.PPID, st.Comm
		if !st.Zombie {
			t.start[pid] = st.Start
		}
	}
}

// readSmall reads a small /proc file into buf with plain system calls (no
// poller registration, no stat): open, one read, close. A file larger
// than buf is refused.
func readSmall(path string, buf []byte) ([]byte, bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	n, err := syscall.Read(fd, buf)
	if err != nil || n <= 0 || n == len(buf) {
		return nil, false
	}
	return buf[:n], true
}
