package cmd_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
	"github.com/rogpeppe/go-internal/testscript"
)

// scriptPorts is how many ports a script gets unless it asks for more with
// `ports N`.
const scriptPorts = 10

// setScriptPorts makes b the script's ports: $RANGE is "START-END" (and
// the default range, GRACECTL_RANGE), $PORT0 to $PORT<n-1> its ports, and
// no $PORTi beyond them.
func setScriptPorts(setenv func(k, v string), getenv func(string) string, b testenv.Block) {
	setenv("RANGE", b.String())
	setenv("GRACECTL_RANGE", b.String())
	for i := 0; i < b.Len() || getenv("PORT"+strconv.Itoa(i)) != ""; i++ {
		v := ""
		if i < b.Len() {
			v = b.P(i)
		}
		setenv("PORT"+strconv.Itoa(i), v)
	}
}

var substRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// ports N: a block of N ports of the script's own instead of the ten
	// it starts with (see setScriptPorts).
	"ports": func(ts *testscript.TestScript, neg bool, args []string) {
		n, err := strconv.Atoi(firstArg(args))
		if len(args) != 1 || neg || err != nil {
			ts.Fatalf("usage: ports N")
		}
		b, release, err := testenv.Reserve(n, func(f string, a ...any) { ts.Logf(f, a...) })
		ts.Check(err)
		ts.Defer(release)
		setScriptPorts(ts.Setenv, ts.Getenv, b)
	},
	// subst FILE...: replace every ${NAME} in the files with the variable's
	// value (files in a txtar archive are not expanded), e.g. ${PORT0}.
	"subst": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) == 0 || neg {
			ts.Fatalf("usage: subst FILE...")
		}
		for _, f := range args {
			data, err := os.ReadFile(ts.MkAbs(f))
			ts.Check(err)
			out := substRef.ReplaceAllStringFunc(string(data), func(ref string) string {
				name := substRef.FindStringSubmatch(ref)[1]
				if ts.Getenv(name) == "" {
					ts.Fatalf("subst %s: $%s is not set", f, name)
				}
				return ts.Getenv(name)
			})
			ts.Check(os.WriteFile(ts.MkAbs(f), []byte(out), 0o666))
		}
	},
	// waitlisten PORT: wait until something accepts connections on
	// 127.0.0.1:PORT (60 s at most, scaled by GRACECTL_TEST_TIMEOUT_SCALE).
	"waitlisten": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: waitlisten PORT")
		}
		timeout := testenv.Scale(60 * time.Second)
		deadline := time.Now().Add(timeout)
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+args[0], time.Second)
			if err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("nothing listens on port %s after %s: %v", args[0], timeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	},
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// scriptSetup gives each script its temp roots and its own ports.
func scriptSetup(env *testscript.Env) error {
	env.Setenv("GRACECTL_ROOT", env.WorkDir)
	// Scripts that unset GRACECTL_ROOT find this host registry, never
	// /var/lib/gracectl.
	env.Setenv("GRACECTL_HOST_ROOT", env.WorkDir+"/host")
	// No background watchdog from run, unless a test asks for one.
	env.Setenv("GRACECTL_WATCHDOG", "off")
	env.Setenv("HOME", env.WorkDir)
	// Every process the script starts (and theirs) is killed when it ends.
	tag := os.Getenv(testenv.TagEnv) + "/" + filepath.Base(env.WorkDir)
	env.Setenv(testenv.TagEnv, tag)
	env.Defer(func() { testenv.KillTagged(tag) })
	b, release, err := testenv.Reserve(scriptPorts, func(f string, a ...any) { env.T().Log(fmt.Sprintf(f, a...)) })
	if err != nil {
		return err
	}
	env.Defer(release)
	setScriptPorts(env.Setenv, env.Getenv, b)
	return nil
}
