package cmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/registry"
)

// environment is every environment variable gracectl reads, read here and
// nowhere else. Each is named in the help of the flag it sets a default for.
type environment struct {
	root        string        // GRACECTL_ROOT
	rangeSpec   string        // GRACECTL_RANGE
	lockTimeout time.Duration // GRACECTL_LOCK_TIMEOUT
	journal     bool          // JOURNAL_STREAM: stderr goes to journald, which stamps lines itself
	// hostRoot is GRACECTL_HOST_ROOT: where the host registry is, when
	// not /var/lib/gracectl (tests point it at a temp folder).
	hostRoot string
	// privateRoot is ${XDG_STATE_HOME:-$HOME/.local/state}/gracectl.
	privateRoot string
	// fleet is GRACECTL_FLEET: the etcd endpoints of the fleet view.
	fleet string
	// fleetTimeout is GRACECTL_FLEET_TIMEOUT: how long a read of the fleet
	// waits for etcd (-1 when it does not parse: a usage error).
	fleetTimeout time.Duration
	// noWatchdog is GRACECTL_WATCHDOG=off: run starts no watchdog.
	noWatchdog bool
	// watchdogIdle is GRACECTL_WATCHDOG_IDLE: how long a watchdog run
	// started waits with an empty registry before it exits.
	watchdogIdle time.Duration
	// dockerHost is DOCKER_HOST: a unix:// socket there is the first
	// container engine asked about containers.
	dockerHost string
	// runtimeDir is XDG_RUNTIME_DIR: where this user's rootless engines
	// put their sockets, when it is not /run/user/UID.
	runtimeDir string
}

func readEnv() environment {
	e := environment{
		root:         os.Getenv("GRACECTL_ROOT"),
		rangeSpec:    registry.DefaultRange.String(),
		lockTimeout:  registry.DefaultLockTimeout,
		journal:      stderrIsJournal(os.Getenv("JOURNAL_STREAM")),
		hostRoot:     os.Getenv("GRACECTL_HOST_ROOT"),
		noWatchdog:   os.Getenv("GRACECTL_WATCHDOG") == "off",
		fleet:        os.Getenv("GRACECTL_FLEET"),
		watchdogIdle: DefaultAutoWatchIdle,
		fleetTimeout: fleet.ReadTimeout,
		dockerHost:   os.Getenv("DOCKER_HOST"),
		runtimeDir:   os.Getenv("XDG_RUNTIME_DIR"),
	}
	if v := os.Getenv("GRACECTL_FLEET_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			e.fleetTimeout = d
		} else {
			e.fleetTimeout = -1
		}
	}
	if d, err := time.ParseDuration(os.Getenv("GRACECTL_WATCHDOG_IDLE")); err == nil && d > 0 {
		e.watchdogIdle = d
	}
	if v := os.Getenv("XDG_STATE_HOME"); v != "" {
		e.privateRoot = filepath.Join(v, "gracectl")
	} else if v := os.Getenv("HOME"); v != "" {
		e.privateRoot = filepath.Join(v, ".local", "state", "gracectl")
	}
	if v := os.Getenv("GRACECTL_RANGE"); v != "" {
		e.rangeSpec = v
	}
	if v := os.Getenv("GRACECTL_LOCK_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			e.lockTimeout = d
		} else {
			e.lockTimeout = -1 // reported as a usage error
		}
	}
	return e
}

// stderrIsJournal: systemd sets JOURNAL_STREAM to the device and inode of
// the stream it connects stdout and stderr to (systemd.exec(5)); stderr is
// the journal only if it is still that stream, not a file or a pipe a child
// of the service redirected it to.
func stderrIsJournal(v string) bool {
	d, i, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(d, 10, 64)
	ino, err2 := strconv.ParseUint(i, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
