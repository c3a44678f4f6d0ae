// Package cmd is gracectl's command line: it parses flags, calls into
// registry and probe, and does all the printing. Errors are printed once, by
// Main, on stderr; data goes to stdout.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

// Exit codes, stable and documented in README.md and each command's help.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitLocked    = 3 // the registry lock could not be taken in time
	exitExhausted = 4 // no free port in the range
)

const exitStatusHelp = `

EXIT STATUS
  0  success
  1  failure (the message says what went wrong)
  2  usage error (a wrong flag or argument)
  3  the registry lock could not be taken in time
  4  no free port in the range`

// version is set at build time with -ldflags "-X github.com/gracectl/gracectl/cmd.version=…".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// usageError is a wrong flag or argument: exit 2 with a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an exit code; if err is nil nothing is printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// globals are the flags every command shares.
type globals struct {
	root        string
	rangeSpec   string
	lockTimeout time.Duration
	rootSource  string // registry.Root* constants
	hostRoot    string
	stdout      io.Writer
	stderr      io.Writer
}

func (g *globals) store() *registry.Store {
	s := registry.Open(g.root, g.lockTimeout)
	s.Notice = func(msg string) {
		if g.rootSource == registry.RootPrivate {
			msg += fmt.Sprintf(" (a registry of your own: you cannot write the host registry %s; to share it, ask root for 'gracectl init --group NAME' and join that group)", g.hostRoot)
		}
		fmt.Fprintf(g.stderr, "gracectl: %s\n", escape(msg))
	}
	return s
}

func (g *globals) portRange() (registry.Range, error) {
	rg, err := registry.ParseRange(g.rangeSpec)
	if err != nil {
		return rg, &usageError{msg: err.Error()}
	}
	return rg, nil
}

// Main runs gracectl with os.Args and returns the process exit code.
func Main() int {
	return run(os.Args[1:], os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return reportError(stderr, cmd, err)
}

func reportError(stderr io.Writer, cmd *cobra.Command, err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(ee.err.Error()))
		}
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(err.Error()))
		name := "gracectl"
		if cmd != nil {
			name = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "gracectl: hint: see '%s --help'\n", name)
		return exitUsage
	}
	fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(err.Error()))
	var le *registry.LockError
	var xe *registry.ExhaustedError
	var ce *registry.CorruptError
	switch {
	case errors.As(err, &le):
		fmt.Fprintf(stderr, "gracectl: hint: raise --lock-timeout, or find the holder with: fuser -v %s\n", le.Path)
		return exitLocked
	case errors.As(err, &xe):
		fmt.Fprintf(stderr, "gracectl: hint: release unused ports (gracectl status) or widen --range\n")
		return exitExhausted
	case errors.As(err, &ce):
		return exitFailure
	}
	return exitFailure
}

// cobra reports flag and argument mistakes as plain errors.
func isCobraUsageError(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "invalid argument", "flag needs an argument", "required flag", "accepts ", "requires at least", "bad flag syntax"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// oneLine keeps an error on one line and free of control characters.
func oneLine(s string) string { return escape(strings.TrimSpace(s)) }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	env := readEnv()
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "gracectl",
		Short: "Hand out, track and watch the TCP ports of every service on a host",
		Long: `gracectl owns a TCP port range (default 8000-8100) for every service on a host.
It hands out ports without ever giving one port to two services, records who,
what, when and why for each in a flock-guarded registry, launches services on
their port, watches them, and keeps a daily audit log.` + exitStatusHelp,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if name := cmd.Name(); name != "watch" && name != "run" {
				// A short-lived command: collect garbage only if the heap
				// nears 256 MiB (docs/benchmarks: the measured gain).
				debug.SetGCPercent(-1)
				debug.SetMemoryLimit(256 << 20)
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			g.hostRoot = env.hostRoot
			if g.hostRoot == "" {
				g.hostRoot = registry.DefaultHostRoot
			}
			root, err := registry.ResolveRoot(registry.RootQuery{Flag: g.root, Env: env.root, WorkDir: wd,
				HostRoot: g.hostRoot, PrivateRoot: env.privateRoot})
			if err != nil {
				return err
			}
			for _, w := range root.Warnings {
				fmt.Fprintf(g.stderr, "gracectl: warning: %s\n", escape(w))
			}
			g.root, g.rootSource = root.Dir, root.Source
			if g.lockTimeout <= 0 {
				return usageErrorf("--lock-timeout must be positive, got %s", g.lockTimeout)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "state directory holding databases/ and logs/ (default: $GRACECTL_ROOT, else the nearest safe directory at or above the working directory with databases/port_registry/, else the host registry /var/lib/gracectl, else ~/.local/state/gracectl for a user who cannot write it)")
	pf.StringVar(&g.rangeSpec, "range", env.rangeSpec, "managed port range START-END; $GRACECTL_RANGE sets the default")
	pf.DurationVar(&g.lockTimeout, "lock-timeout", env.lockTimeout, "how long to wait for the registry lock; $GRACECTL_LOCK_TIMEOUT sets the default")
	root.AddCommand(newAllocateCmd(g), newReleaseCmd(g), newRegisterCmd(g), newStatusCmd(g), newRunCmd(g),
		newCheckCmd(g), newWatchCmd(g), newAdoptCmd(g), newInitCmd(g), newExecTrampolineCmd())
	return root
}
