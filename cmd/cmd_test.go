package cmd_test

import (
	"os"
	"testing"

	"github.com/gracectl/gracectl/cmd"
	"github.com/gracectl/gracectl/probe/container/containertest"
	"github.com/gracectl/gracectl/registry/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// Ports: every script gets ten of its own from testenv ($RANGE, $PORT0 to
// $PORT9; `ports N` for more); every Go test takes its own with
// testenv.Ports (docs/testing.md).

func TestMain(m *testing.M) {
	// Under -race every process sleeps 1 s at exit by default; the scripts
	// run hundreds of them.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	// testenv.Main: every process the tests start is killed by the end.
	testscript.Main(removingImages{testenv.Main(m)}, map[string]func(){
		"gracectl": func() { os.Exit(cmd.Main()) },
	})
}

// removingImages removes the container images the tests made once they
// have run.
type removingImages struct{ m testenv.M }

func (r removingImages) Run() int {
	defer containertest.Remove()
	return r.m.Run()
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata/script",
		Setup: scriptSetup,
		Cmds:  scriptCmds,
	})
}
