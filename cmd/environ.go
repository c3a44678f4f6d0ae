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
	// waits for etcd.
	fleetTimeout time.Duration
	// noWatchdog is GRACECTL_WATCHDOG=off: run starts no watchdog.
	noWatchdog bool
	// invalid holds, by variable name, the usage error of each variable
	// set to a value gracectl cannot use; the default stands in for it,
	// and the error is given only where the variable is used (envProblem).
	invalid map[string]error
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
		invalid:      map[string]error{},
		fleet:        os.Getenv("GRACECTL_FLEET"),
		watchdogIdle: DefaultAutoWatchIdle,
		fleetTimeout: fleet.ReadTimeout,
		dockerHost:   os.Getenv("DOCKER_HOST"),
		runtimeDir:   os.Getenv("XDG_RUNTIME_DIR"),
	}
	e.envDuration("GRACECTL_FLEET_TIMEOUT", &e.fleetTimeout)
	e.envDuration("GRACECTL_WATCHDOG_IDLE", &e.watchdogIdle)
	switch v := os.Getenv("GRACECTL_WATCHDOG"); v {
	case "", "on", "off":
	default:
		e.invalid["GRACECTL_WATCHDOG"] = envError("GRACECTL_WATCHDOG", v, "want on or off")
	}
	if v := os.Getenv("XDG_STATE_HOME"); v != "" {
		e.privateRoot = filepath.Join(v, "gracectl")
	} else if v := os.Getenv("HOME"); v != "" {
		e.privateRoot = filepath.Join(v, ".local", "state", "gracectl")
	}
	if v := os.Getenv("GRACECTL_RANGE"); v != "" {
		e.rangeSpec = v
	}
	e.envDuration("GRACECTL_LOCK_TIMEOUT", &e.lockTimeout)
	return e
}

// envDuration reads the duration variable name into d, which keeps its
// default if the variable is unset or invalid (then recorded in invalid).
func (e *environment) envDuration(name string, d *time.Duration) {
	v := os.Getenv(name)
	if v == "" {
		return
	}
	switch got, err := time.ParseDuration(v); {
	case err != nil:
		e.invalid[name] = envError(name, v, "not a duration (like 10s)")
	case got <= 0:
		e.invalid[name] = envError(name, v, "must be positive")
	default:
		*d = got
	}
}

// envError is the usage error of a variable set to a value gracectl
// cannot use: `$NAME "value": what is wrong`.
func envError(name, value, problem string) error {
	return usageErrorf("$%s %s: %s", name, registry.Quote(value), problem)
}

// envProblem is the usage error of variable name if its value is invalid
// and the flag that stands in for it was not given (overridden).
func (e environment) envProblem(name string, overridden bool) error {
	if overridden {
		return nil
	}
	return e.invalid[name]
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
