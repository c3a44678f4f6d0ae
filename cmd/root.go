// Package cmd is gracectl's command line: it parses flags, calls into
// registry and probe, and does all the printing. Errors are printed once, by
// Main, on stderr; data goes to stdout. One file per subcommand.
//
// It never changes the registry but through registry.Store, and never
// reads /proc or sockets itself: rules about ports and processes live in
// registry, probe and their sub-packages.
package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, stable and documented in README.md and each command's help.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitLocked      = 3 // the registry lock could not be taken in time
	exitExhausted   = 4 // no free port in the range
	exitCheckFailed = 5 // check: the check itself could not run (1 means an issue was found)
	exitStartup     = 6 // watch: could not start (another watchdog, the API's address in use)
	exitFleet       = 7 // --fleet: etcd did not answer within --fleet-timeout, or refused the read
)

// exitMeanings are the codes' lines in the help, in README's words
// ("Exit codes"), less the names of the commands a code belongs to, which
// rootExitMeanings adds for the root's help.
var exitMeanings = map[int]string{
	exitOK:          "success",
	exitFailure:     "failure, with a one-line message",
	exitUsage:       "usage error: a wrong flag or argument",
	exitLocked:      "the registry lock could not be taken: its holder finished no change for --lock-timeout",
	exitExhausted:   "no free port in the range",
	exitCheckFailed: "the check could not run (the registry could not be read or written)",
	exitStartup:     "the watchdog could not start: another one watches this registry, the API's address is in use, or the --routes proxy cannot be reached",
	exitFleet:       "the fleet could not be read: no etcd endpoint answered within --fleet-timeout, or etcd refused the read; the message names the endpoints tried",
}

// rootExitMeanings are the root help's lines: README's table whole.
var rootExitMeanings = map[int]string{
	exitOK:          exitMeanings[exitOK] + " (check: every port fine)",
	exitFailure:     exitMeanings[exitFailure] + " (check: an issue was found; why: the port is busy)",
	exitExhausted:   exitMeanings[exitExhausted] + " (allocate, run)",
	exitCheckFailed: "check: " + exitMeanings[exitCheckFailed] + "; 1 means an issue was found",
	exitStartup:     "watch: " + exitMeanings[exitStartup],
	exitFleet:       "--fleet (status, port, who, env): " + exitMeanings[exitFleet],
}

// runExitLine is what run exits with when it started its command.
const runExitLine = "\n  run  the child's status; 128+N for signal N; 126 not executable; 127 not found"

// exitHelp is the EXIT STATUS section of a command's help: the codes it can
// return, with overrides for those it means differently.
func exitHelp(codes []int, override map[int]string) string {
	var b strings.Builder
	b.WriteString("\n\nEXIT STATUS")
	for _, c := range codes {
		m := exitMeanings[c]
		if o, ok := override[c]; ok {
			m = o
		}
		fmt.Fprintf(&b, "\n  %d  %s", c, m)
	}
	return b.String()
}

// The codes of a command that changes the registry, and of one that only
// reads it.
var (
	writerExits = []int{exitOK, exitFailure, exitUsage, exitLocked}
	readerExits = []int{exitOK, exitFailure, exitUsage}
	// fleetReaderExits are those of a reader that takes --fleet.
	fleetReaderExits = []int{exitOK, exitFailure, exitUsage, exitFleet}
)

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

// vcsRevision is the commit the binary was built from, "" if unknown.
func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" {
				return kv.Value
			}
		}
	}
	return ""
}

// usageError is a wrong flag or argument: exit 2 with a hint, by default
// to see the command's help.
type usageError struct {
	msg, hint string
	// suggestions are commands the mistyped one may have meant.
	suggestions []string
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an exit code; if err is nil nothing is printed. hint,
// if set, is printed after the error.
type exitError struct {
	code int
	err  error
	hint string
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
	// rangeFromEnv: the range is $GRACECTL_RANGE's, not --range's.
	rangeFromEnv bool
	hostRoot     string
	env          environment
	stdout       io.Writer
	stderr       io.Writer
	eng          *container.Engines
}

// engines are the container engines of this host, asked only when a
// container is met; no connection is made before.
func (g *globals) engines() *container.Engines {
	if g.eng == nil {
		g.eng = &container.Engines{DockerHost: g.env.dockerHost, RuntimeDir: g.env.runtimeDir}
	}
	return g.eng
}

func (g *globals) store() *registry.Store {
	s := registry.Open(g.root, g.lockTimeout)
	if g.rootSource != registry.RootHost && g.hostRoot != "" && !registry.SameRoot(g.root, g.hostRoot) {
		// A private, project or --root registry keeps off the host
		// registry's ports; the host registry does not look for the
		// others (README: "Several registries on one host").
		s.Elsewhere = []string{g.hostRoot}
	}
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
		var re *registry.RangeError
		if g.rangeFromEnv && errors.As(err, &re) {
			return rg, envError("GRACECTL_RANGE", g.rangeSpec, re.Problem)
		}
		return rg, &usageError{msg: err.Error()}
	}
	return rg, nil
}

// watchedRange is portRange for commands that only look at a range
// (status, check, watch): one that allocate would refuse is shown all the
// same, with a warning.
func (g *globals) watchedRange() (registry.Range, error) {
	rg, err := g.portRange()
	if err == nil {
		if cerr := registry.CheckRange(rg); cerr != nil {
			fmt.Fprintf(g.stderr, "gracectl: warning: %s; allocate refuses this range\n", oneLine(cerr.Error()))
		}
	}
	return rg, err
}

// Main runs gracectl with os.Args and returns the process exit code.
// Reports go to stdout through one buffer, flushed before Main returns: a
// table of thousands of lines is a few write calls, not one per line. No
// command writes to stdout and then waits (run hands the child the real
// stdout).
func Main() int {
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	code := run(os.Args[1:], out, os.Stderr)
	if err := out.Flush(); err != nil && code == exitOK {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // "broken pipe", not "write /dev/stdout: broken pipe"
		}
		fmt.Fprintf(os.Stderr, "gracectl: error: cannot write the output: %s\n", oneLine(err.Error()))
		return exitFailure
	}
	return code
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr, args)
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
		hint := ee.hint
		if ee.err != nil {
			msg, plainHint := registry.PlainError(ee.err)
			fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(msg))
			if hint == "" {
				hint = plainHint
			}
		}
		if hint != "" {
			fmt.Fprintf(stderr, "gracectl: hint: %s\n", oneLine(hint))
		}
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(ue.msg))
		if len(ue.suggestions) > 0 {
			fmt.Fprintln(stderr, "Did you mean this?")
			for _, sug := range ue.suggestions {
				fmt.Fprintf(stderr, "\t%s\n", escape(sug))
			}
		}
		if ue.hint != "" {
			fmt.Fprintf(stderr, "gracectl: hint: %s\n", oneLine(ue.hint))
			return exitUsage
		}
		name := "gracectl"
		if cmd != nil {
			name = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "gracectl: hint: see '%s --help'\n", name)
		return exitUsage
	}
	msg, plainHint := registry.PlainError(err)
	fmt.Fprintf(stderr, "gracectl: error: %s\n", oneLine(msg))
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
	if h := permissionHint(err); h != "" {
		plainHint = h
	}
	if plainHint != "" {
		fmt.Fprintf(stderr, "gracectl: hint: %s\n", oneLine(plainHint))
	}
	return exitFailure
}

// flagMessage rewrites pflag's "invalid argument "abc" for "--pid" flag:
// strconv.ParseInt: parsing "abc": invalid syntax" as `--pid: "abc" is not a
// whole number`: the flag and what it expects, no Go internals.
func flagMessage(err error) string {
	var ie *pflag.InvalidValueError
	if !errors.As(err, &ie) {
		return err.Error()
	}
	f := ie.GetFlag()
	want := "valid"
	switch f.Value.Type() {
	case "int", "int64", "uint", "uint64", "int32":
		want = "a whole number"
	case "duration":
		want = "a duration such as 500ms, 30s or 1m30s"
	case "bool":
		want = "true or false"
	case "float64":
		want = "a number"
	default:
		if e, ok := f.Value.(interface{ Expects() string }); ok {
			want = e.Expects()
		}
	}
	return fmt.Sprintf("--%s: %s is not %s", f.Name, registry.Quote(ie.GetValue()), want)
}

// oneLine keeps an error on one line, free of control characters, and
// short: whatever a message quotes, it is never longer than maxMessage
// bytes (a 120 KB argument is not echoed back whole).
func oneLine(s string) string {
	s = escape(strings.TrimSpace(s))
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d more bytes)", s[:cut], len(s)-cut)
}

// maxMessage bounds one line of an error or a warning.
const maxMessage = 1024

func newRootCmd(stdout, stderr io.Writer, args []string) *cobra.Command {
	env := readEnv()
	g := &globals{stdout: stdout, stderr: stderr, env: env}
	root := &cobra.Command{
		Use:   "gracectl",
		Short: "Hand out, track and watch the TCP ports of every service on a host",
		Long: `gracectl owns a TCP port range (default 8000-8100) for every service on a host.
It hands out ports without ever giving one port to two services, records who,
what, when and why for each in a flock-guarded registry, launches services on
their port, watches them, and keeps a daily audit log.` + exitHelp([]int{exitOK, exitFailure, exitUsage, exitLocked, exitExhausted, exitCheckFailed, exitStartup, exitFleet}, rootExitMeanings) + runExitLine,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return g.setUp(cmd) },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	usageErrorsOnly(root, args)
	// --version by hand: cobra's prints the version whatever follows it.
	var showVersion bool
	root.Flags().BoolVar(&showVersion, "version", false, "print the version")
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if !showVersion {
			return cmd.Help()
		}
		fmt.Fprintf(stdout, "gracectl version %s\n", versionString())
		return nil
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "state directory holding databases/ and logs/ (default: $GRACECTL_ROOT, else the nearest safe directory at or above the working directory with databases/port_registry/, else the host registry /var/lib/gracectl, else ~/.local/state/gracectl for a user who cannot write it)")
	pf.StringVar(&g.rangeSpec, "range", env.rangeSpec, "managed port range START-END; $GRACECTL_RANGE sets the default")
	pf.DurationVar(&g.lockTimeout, "lock-timeout", env.lockTimeout, "how long to wait for the registry lock while no other gracectl finishes a change; $GRACECTL_LOCK_TIMEOUT sets the default")
	root.AddCommand(newAllocateCmd(g), newReleaseCmd(g), newRegisterCmd(g), newStatusCmd(g), newRunCmd(g),
		newCheckCmd(g), newWatchCmd(g), newAdoptCmd(g), newPortCmd(g), newEnvCmd(g), newWhoCmd(g), newWhyCmd(g), newWaitCmd(g), newFreeCmd(g), newRoutesCmd(g), newForgetCmd(g), newInitCmd(g), newExecTrampolineCmd(), newDetachCmd())
	strictCompletion(root)
	strictHelp(root)
	return root
}

// strictHelp makes `help NOSUCH` a usage error naming the unknown command,
// as `gracectl NOSUCH` is, not the root's help and exit 0.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() != "help" {
			continue
		}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || target == nil {
				target, rest = root, args
			}
			if len(rest) > 0 {
				return &usageError{msg: fmt.Sprintf("unknown command %q for %q", rest[0], target.CommandPath()),
					suggestions: target.SuggestionsFor(rest[0]), hint: fmt.Sprintf("see '%s --help'", target.CommandPath())}
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		}
	}
}

// setUp runs before every command: it finds the state root (saying why it
// skipped any) and checks the global flags.
func (g *globals) setUp(cmd *cobra.Command) error {
	if name := cmd.Name(); name != "watch" && name != "run" {
		// A short-lived command: collect garbage only if the heap nears
		// 256 MiB (docs/benchmarks: the measured gain).
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(256 << 20)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	g.hostRoot = g.env.hostRoot
	if g.hostRoot == "" {
		g.hostRoot = registry.DefaultHostRoot
	}
	root, err := registry.ResolveRoot(registry.RootQuery{Flag: g.root, Env: g.env.root, WorkDir: wd,
		HostRoot: g.hostRoot, PrivateRoot: g.env.privateRoot})
	if err != nil {
		return err
	}
	for _, w := range root.Warnings {
		fmt.Fprintf(g.stderr, "gracectl: warning: %s\n", escape(w))
	}
	g.root, g.rootSource = root.Dir, root.Source
	g.rangeFromEnv = !cmd.Flags().Changed("range") && g.env.rangeSpec != registry.DefaultRange.String()
	if err := g.env.envProblem("GRACECTL_LOCK_TIMEOUT", cmd.Flags().Changed("lock-timeout")); err != nil {
		return err
	}
	if g.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout %s: must be positive", g.lockTimeout)
	}
	return nil
}

// usageErrorsOnly makes every mistake on the command line a usageError
// (exit 2): flags through cobra's flag error hook, a mistyped command
// through the root's Args (the root takes no arguments of its own), and
// arguments through each command's Args.
func usageErrorsOnly(root *cobra.Command, args []string) {
	root.SuggestionsMinimumDistance = 2
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		return &usageError{msg: fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath()), suggestions: cmd.SuggestionsFor(args[0])}
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: flagMessage(err), hint: guessedFlagHint(c, err, args)}
	})
}

// strictCompletion adds cobra's completion command, with an unknown shell
// (`completion tcsh`) and extra arguments as usage errors, not help.
func strictCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		for _, shell := range c.Commands() {
			shell.Args = noArgs
		}
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("no completion for shell %s: choose bash, zsh, fish or powershell", registry.Quote(args[0]))
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	}
}
