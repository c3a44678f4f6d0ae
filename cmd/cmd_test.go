package cmd_test

import (
	"os"
	"testing"

	"github.com/gracectl/gracectl/cmd"
	"github.com/rogpeppe/go-internal/testscript"
)

// Ports: scripts under testdata/script use 23000-23999, ten per script; Go
// tests in this package use 24000-24999.

func TestMain(m *testing.M) {
	// Under -race every process sleeps 1 s at exit by default; the scripts
	// run hundreds of them.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	testscript.Main(m, map[string]func(){
		"gracectl": func() { os.Exit(cmd.Main()) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("GRACECTL_ROOT", env.WorkDir)
			// Scripts that unset GRACECTL_ROOT find this host registry, never
			// /var/lib/gracectl.
			env.Setenv("GRACECTL_HOST_ROOT", env.WorkDir+"/host")
			// No background watchdog from run, unless a test asks for one.
			env.Setenv("GRACECTL_WATCHDOG", "off")
			env.Setenv("HOME", env.WorkDir)
			return nil
		},
		Cmds: scriptCmds,
	})
}
