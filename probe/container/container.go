// Package container knows containers as owners of ports. A port a Docker
// or Podman container publishes is held on the host by the engine's proxy
// (docker-proxy, dockerd, rootlesskit, conmon, rootlessport), not by the
// container's own process; this package asks the engine which container
// that is, and stops, inspects and follows containers for `gracectl run`
// and the watchdog.
//
// It talks to the engine through its documented HTTP API (the Docker
// Engine API, which Podman serves too) on the engine's unix socket, with
// net/http: no client library. Nothing happens until a caller asks, so a
// command that meets no container pays nothing for this package. An
// engine is believed only as far as the kernel vouches for it: its socket's
// peer (SO_PEERCRED) must be root or the user whose process is concerned.
//
// It never prints and never changes the registry.
package container

import (
	"path/filepath"
	"strings"
)

// Info names a container.
type Info struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitzero"`
	Image  string `json:"image,omitzero"`
	Engine string `json:"engine,omitzero"` // "docker" or "podman"
	// Socket is the engine's API socket the container was found on.
	Socket string `json:"socket,omitzero"`
	// PID is its main process as this host sees it (0 when it is not
	// running, or not asked).
	PID int `json:"pid,omitzero"`
}

// Short is the first 12 characters of the ID, as `docker ps` shows it.
func (i *Info) Short() string {
	if len(i.ID) > 12 {
		return i.ID[:12]
	}
	return i.ID
}

// Label names the container: its name, else its short ID.
func (i *Info) Label() string {
	if i.Name == "" {
		return i.Short()
	}
	return i.Name
}

// Describe names the container for a message: "container cweb (bb:local)".
func (i *Info) Describe() string {
	if i.Image == "" {
		return "container " + i.Label()
	}
	return "container " + i.Label() + " (" + i.Image + ")"
}

// State is what the engine says of one container now.
type State struct {
	Info
	// Exists is false when the engine does not know the container (it was
	// removed).
	Exists     bool
	Running    bool // running or paused
	Restarting bool // between two runs under a restart policy
	// Ports are the host TCP ports it publishes.
	Ports []int
	// ExitCode is its last exit status, when it is not running.
	ExitCode int
	// NATHere: its engine is root's and runs in this network namespace,
	// so its Ports are published here even where no process listens on
	// them (an engine whose userland proxy is off).
	NATHere bool
}

// Publishes reports whether the container publishes host port port.
func (s *State) Publishes(port int) bool {
	for _, p := range s.Ports {
		if p == port {
			return true
		}
	}
	return false
}

// IsProxy reports whether a process of this executable name can hold a
// port on a container engine's behalf (Docker's userland proxy and daemon,
// rootless Docker's rootlesskit, Podman's conmon and its rootless port
// forwarders): only then is an engine asked. A switch, not a map: nothing
// is built at start-up.
func IsProxy(name string) bool {
	switch name {
	case "docker-proxy", "dockerd", "rootlesskit", "conmon", "rootlessport", "pasta", "pasta.avx2", "slirp4netns":
		return true
	}
	return false
}

// RunCommand is a `docker run` or `podman run` command line, as
// `gracectl run` is given it.
type RunCommand struct {
	Engine string // "docker" or "podman"
	// At is the index in the command line just after "run", where options
	// of the run subcommand may be added.
	At int
	// CIDFile is the --cidfile the command already names ("" if none).
	CIDFile string
	// Name is the container's --name ("" if none).
	Name string
}

// takesValue reports the global options of docker and podman that take a
// separate value ("--context ctx run ..."), so the value is not taken for
// the subcommand.
func takesValue(opt string) bool {
	switch opt {
	case "-c", "--context", "-H", "--host", "-l", "--log-level", "--config", "--tlscacert", "--tlscert", "--tlskey", // docker
		"--cgroup-manager", "--conmon", "--connection", "--events-backend", "--hooks-dir", "--identity", "--imagestore",
		"--module", "--network-cmd-path", "--network-config-dir", "--root", "--runroot", "--runtime", "--runtime-flag",
		"--ssh", "--storage-driver", "--storage-opt", "--tmpdir", "--url", "--volumepath", "--cdi-spec-dir", "--db-backend": // podman
		return true
	}
	return false
}

// ParseRun recognises argv as a container run ("docker run", "docker
// container run", "podman run", "podman container run", global options
// allowed before the subcommand). ok is false for any other command.
func ParseRun(argv []string) (rc RunCommand, ok bool) {
	if len(argv) < 2 {
		return RunCommand{}, false
	}
	switch filepath.Base(argv[0]) {
	case "docker":
		rc.Engine = "docker"
	case "podman":
		rc.Engine = "podman"
	default:
		return RunCommand{}, false
	}
	i := 1
	for i < len(argv) && strings.HasPrefix(argv[i], "-") {
		if takesValue(argv[i]) {
			i++
		}
		i++
	}
	if i < len(argv) && argv[i] == "container" {
		i++
	}
	if i >= len(argv) || argv[i] != "run" {
		return RunCommand{}, false
	}
	rc.At = i + 1
	rc.CIDFile = runOption(argv[rc.At:], "--cidfile")
	rc.Name = runOption(argv[rc.At:], "--name")
	return rc, true
}

// runOption finds the value of a run option ("--name web" or
// "--name=web") in the run subcommand's arguments, up to a "--". Where the
// image starts cannot be told without the engine's whole option list, so
// the option among the container command's own arguments is taken too: a
// --cidfile there means the engine writes no such file, and run goes on
// without knowing the container; a --name there only names the service.
func runOption(args []string, opt string) string {
	for i, a := range args {
		if a == "--" {
			return ""
		}
		if v, ok := strings.CutPrefix(a, opt+"="); ok {
			return v
		}
		if a == opt && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
