package probe

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Inspect reads one process's identity, name, users and kind through one
// /proc folder; PeerOf reports the kernel's view of a Unix socket's peer.
func TestInspectAndPeer(t *testing.T) {
	self := os.Getpid()
	info, err := Inspect(self, true)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := Identify(self)
	if info.ID != id || info.UID != os.Getuid() || info.EUID != os.Geteuid() || info.Kernel || info.Name == "" {
		t.Errorf("Inspect(self) = %+v; Identify says %+v", info, id)
	}
	if !info.OwnedBy(os.Geteuid()) || (os.Geteuid() != 0 && info.OwnedBy(os.Geteuid()+1)) {
		t.Errorf("OwnedBy is wrong for %+v", info)
	}
	if quick, _ := Inspect(self, false); quick.UID != -1 || quick.ID != id {
		t.Errorf("Inspect without users: %+v", quick)
	}
	c := exec.Command("true")
	c.Run()
	if _, err := Inspect(c.Process.Pid, true); !errors.Is(err, ErrNoProcess) {
		t.Errorf("an ended process: %v", err)
	}
	if kt := kernelThread(); kt > 0 {
		if info, err := Inspect(kt, true); err != nil || !info.Kernel {
			t.Errorf("kernel thread %d: %+v, %v", kt, info, err)
		}
	}
	st, err := ParseStat([]byte("42 (a) (b) c) S 1 1 1 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0"))
	if err != nil || st.Comm != "a) (b) c" || st.Flags != 2129984 || st.Start != 777 {
		t.Errorf("ParseStat: %+v %v", st, err)
	}
	if u, e := parseStatusUIDs([]byte("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n")); u != 1000 || e != 0 {
		t.Errorf("parseStatusUIDs: %d %d", u, e)
	}

	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := net.Dial("unix", sock); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := PeerOf(conn.(*net.UnixConn))
	if err != nil || peer.UID != os.Geteuid() || peer.PID != self {
		t.Errorf("PeerOf: %+v, %v", peer, err)
	}
}

// kernelThread finds a kernel thread visible here, 0 if none is (a
// container's /proc).
func kernelThread() int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&pfKthread != 0 {
			return pid
		}
	}
	return 0
}
