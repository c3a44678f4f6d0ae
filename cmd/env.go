package cmd

import (
	"os"
	"path/filepath"
	"time"

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
}

func readEnv() environment {
	e := environment{
		root:        os.Getenv("GRACECTL_ROOT"),
		rangeSpec:   registry.DefaultRange.String(),
		lockTimeout: registry.DefaultLockTimeout,
		journal:     os.Getenv("JOURNAL_STREAM") != "",
		hostRoot:    os.Getenv("GRACECTL_HOST_ROOT"),
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
