package probe

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Namespaces. A PID means something only in its PID namespace: a service
// started inside a container (its own PID namespace, the host's network)
// has PID 9 there and, say, 31337 on the host. An owner is recorded with
// the inode of its PID namespace (and of its network namespace), which is
// the same number seen from anywhere; a watchdog in another namespace finds
// the process by the NSpid line of /proc/*/status.

// nsInode reads the inode of /proc/PID/ns/KIND ("pid:[4026531836]"), 0 if
// it cannot be read.
func nsInode(pid, kind string) uint64 {
	link, err := os.Readlink("/proc/" + pid + "/ns/" + kind)
	if err != nil {
		return 0
	}
	return parseNSLink(link)
}

// parseNSLink reads the inode of a namespace link ("pid:[4026531836]"), 0
// if it is not one.
func parseNSLink(link string) uint64 {
	i, j := strings.IndexByte(link, '['), strings.IndexByte(link, ']')
	if i < 0 || j < i {
		return 0
	}
	n, _ := strconv.ParseUint(link[i+1:j], 10, 64)
	return n
}

var selfNS struct {
	once     sync.Once
	pid, net uint64
}

// SelfNamespaces are this process's PID and network namespace inodes.
func SelfNamespaces() (pidNS, netNS uint64) {
	selfNS.once.Do(func() {
		selfNS.pid = nsInode("self", "pid")
		selfNS.net = nsInode("self", "net")
	})
	return selfNS.pid, selfNS.net
}

// PIDNamespaceOf is the inode of pid's PID namespace, 0 if it cannot be
// read; ok is false when no process pid is seen here. One readlink, where
// Inspect reads the process's stat too.
func PIDNamespaceOf(pid int) (ns uint64, ok bool) {
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, false
	}
	if err != nil {
		return 0, true
	}
	return parseNSLink(link), true
}

func namespacesOf(pid int) (pidNS, netNS uint64) {
	p := strconv.Itoa(pid)
	return nsInode(p, "pid"), nsInode(p, "net")
}

var procOwn struct {
	once sync.Once
	own  bool
}

// procIsOwn reports whether /proc shows this process's own PID namespace:
// /proc/self names this process by the PID it has here. Under `unshare
// --pid --fork` without --mount-proc it does not, and a PID given here
// means another process in /proc.
func procIsOwn() bool {
	procOwn.once.Do(func() {
		link, err := os.Readlink("/proc/self")
		procOwn.own = err != nil || link == strconv.Itoa(os.Getpid())
	})
	return procOwn.own
}

// innermostPID is the PID process local (in /proc's view) has in its own
// PID namespace: the last field of its NSpid line.
func innermostPID(local int) (int, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(local) + "/status")
	if err != nil {
		return 0, false
	}
	last, ok := lastNSpid(data)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(last)
	return pid, err == nil && pid > 0
}

// localPID finds, in this process's view, the process that is pid in the
// PID namespace ns: the one whose NSpid line ends in pid and whose PID
// namespace is ns. complete is false when some process could not be
// looked at (another user's, without root), so a miss proves nothing.
func localPID(pid int, ns uint64) (local int, found, complete bool) {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false, false
	}
	complete = true
	want := strconv.Itoa(pid)
	for _, e := range dir {
		cand, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone meanwhile
		}
		last, ok := lastNSpid(data)
		if !ok || last != want {
			continue
		}
		switch n := nsInode(e.Name(), "pid"); {
		case n == ns:
			return cand, true, true
		case n == 0:
			complete = false // cannot tell: not ours to look at
		}
	}
	return 0, false, complete
}

// lastNSpid returns the last field of the NSpid line: the PID in the
// innermost namespace.
func lastNSpid(status []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("NSpid:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 0 {
				return "", false
			}
			return f[len(f)-1], true
		}
	}
	return "", false
}

// ListeningIn reports whether a LISTEN socket for port exists in the
// network namespace of process pid (its /proc/PID/net/tcp{,6}).
func listeningInNetNS(pid, port int) (bool, error) {
	found, read := false, false
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + f)
		if err != nil {
			continue
		}
		read = true
		_ = ParseProcNetTCP(bytes.NewReader(data), func(p int, _ uint64) {
			if p == port {
				found = true
			}
		})
	}
	if !read {
		return false, os.ErrNotExist
	}
	return found, nil
}

// SamePIDNamespace reports whether process pid (as this process sees it)
// is in this process's PID namespace; false when that cannot be told.
func SamePIDNamespace(pid int) bool {
	self, _ := SelfNamespaces()
	return pid > 0 && self != 0 && nsInode(strconv.Itoa(pid), "pid") == self
}

// SameNetNamespace reports whether process pid (as this process sees it)
// is in this process's network namespace; false when that cannot be told.
func SameNetNamespace(pid int) bool {
	_, self := SelfNamespaces()
	return pid > 0 && self != 0 && nsInode(strconv.Itoa(pid), "net") == self
}
