package probe

import (
	"os"
	"slices"
	"strconv"
	"strings"
)

// Supervisor is the process manager a process runs under, as far as its
// ancestry shows: `gracectl run`, a container engine (its shim, conmon),
// systemd (a unit, from the process's cgroup), or init.
type Supervisor struct {
	Kind string // "gracectl run", "container", "systemd", "init"
	PID  int    // the supervising process (systemd: 1, or a user manager)
	// Name is what it calls the process's service: the systemd unit
	// (nginx.service), the engine's program (containerd-shim-runc-v2),
	// pid 1's name under another init.
	Name string
}

// Ancestor is one process of a parent chain.
type Ancestor struct {
	PID  int
	Name string // the executable's name (comm)
}

// Parent is pid's parent in the table, 0 if unknown.
func (t *ProcessTable) Parent(pid int) int { return t.parent[pid] }

// containerShims are the processes a container engine leaves as the
// parent of a container's main process.
var containerShims = []string{"containerd-shim", "containerd-shim-runc-v2", "containerd-shim-runc-v1", "conmon",
	"crun", "runc", "dockerd", "containerd", "podman", "buildkitd"}

// SupervisorOf walks pid's parents, nearest first, to the first known
// supervisor and returns the processes passed on the way (pid's parent
// first, the supervisor last) and the supervisor; ok is false when the
// chain ends without one (no /proc, a process that is gone).
func (t *ProcessTable) SupervisorOf(pid int) (chain []Ancestor, sup Supervisor, ok bool) {
	seen := map[int]bool{pid: true}
	for p := t.parent[pid]; p > 0 && !seen[p] && len(chain) < 64; p = t.parent[p] {
		seen[p] = true
		name := t.name[p]
		chain = append(chain, Ancestor{PID: p, Name: name})
		switch {
		case p == 1 && name == "systemd":
			return chain, Supervisor{Kind: "systemd", PID: 1, Name: SystemdUnit(pid)}, true
		case p == 1:
			return chain, Supervisor{Kind: "init", PID: 1, Name: name}, true
		case name == "systemd":
			return chain, Supervisor{Kind: "systemd", PID: p, Name: SystemdUnit(pid)}, true // a user's manager
		case slices.Contains(containerShims, name) || strings.HasPrefix(name, "containerd-shim"):
			return chain, Supervisor{Kind: "container", PID: p, Name: name}, true
		case isGracectlRun(p):
			return chain, Supervisor{Kind: "gracectl run", PID: p, Name: "gracectl run"}, true
		}
	}
	return chain, Supervisor{}, false
}

// isGracectlRun reports whether pid is `gracectl run`: this program (or
// one called gracectl) with "run" as its subcommand.
func isGracectlRun(pid int) bool {
	if !ExecutableIs(pid, "gracectl") {
		return false
	}
	argv := Cmdline(pid)
	if len(argv) < 2 {
		return false
	}
	for _, a := range argv[1:] {
		if !strings.HasPrefix(a, "-") {
			return a == "run"
		}
	}
	return false
}

// SystemdUnit is the systemd unit whose cgroup holds pid (the last
// .service or .scope of its cgroup v2 path, /proc/PID/cgroup's "0::"
// line), "" if none.
func SystemdUnit(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	return UnitOfCgroup(string(data))
}

// UnitOfCgroup reads the systemd unit from the text of /proc/PID/cgroup:
// the last path element ending in .service or .scope of the unified
// hierarchy's line (or of a v1 name=systemd line).
func UnitOfCgroup(text string) string {
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || (f[1] != "" && f[1] != "name=systemd") {
			continue
		}
		parts := strings.Split(f[2], "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if strings.HasSuffix(parts[i], ".service") || strings.HasSuffix(parts[i], ".scope") {
				return parts[i]
			}
		}
	}
	return ""
}
