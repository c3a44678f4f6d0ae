package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TagEnv marks every process a test starts, and through inheritance
// everything those start in turn (a daemon that forks, calls setsid and is
// re-parented keeps its environment): the test binary's pid, then "/" and
// the test's name for processes started for one test. Not GRACECTL_*: the
// tests that clear gracectl's variables keep it.
const TagEnv = "TESTENV_TAG"

// M is what a TestMain has: testing.M, or testscript's.
type M interface{ Run() int }

type mainRun struct{ m M }

// Main wraps m so that its Run tags this process (TagEnv) and, after the
// tests, kills every process still carrying the tag, wherever it was
// re-parented; and so that, shortly before -test.timeout would panic (and
// skip every t.Cleanup), it kills them too, so a hung test fails instead.
// Use it as `os.Exit(testenv.Main(m).Run())`, or hand it to testscript.Main.
func Main(m M) M { return mainRun{m} }

func (r mainRun) Run() int {
	self := strconv.Itoa(os.Getpid())
	os.Setenv(TagEnv, self)
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			margin := min(d/10, 30*time.Second)
			time.AfterFunc(d-margin, func() {
				fmt.Fprintf(os.Stderr, "testenv: %s before -test.timeout: killing every process the tests started\n", margin)
				KillTagged(self)
			})
		}
	}
	code := r.m.Run()
	if n := KillTagged(self); n > 0 {
		fmt.Fprintf(os.Stderr, "testenv: killed %d processes the tests left behind\n", n)
	}
	return code
}

var tagged sync.Map // testing.TB -> its TagEnv entry

// Tag is the TagEnv entry ("TESTENV_TAG=PID/TestName") for the processes
// t starts; when t ends, every process still carrying it (or a subtest's)
// is killed. Put it in the environment of every process the test starts.
func Tag(t testing.TB) string {
	if e, ok := tagged.Load(t); ok {
		return e.(string)
	}
	tag := strconv.Itoa(os.Getpid()) + "/" + t.Name()
	e := TagEnv + "=" + tag
	if _, loaded := tagged.LoadOrStore(t, e); !loaded {
		t.Cleanup(func() {
			KillTagged(tag)
			tagged.Delete(t)
		})
	}
	return e
}

// Command is exec.Command for a process t starts: tagged (Tag), in a
// process group of its own, killed with its group when t ends (and, on
// Linux, when the test binary dies), running or not.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), Tag(t))
	Own(t, c)
	return c
}

// Own makes c, not yet started, a process of t's: in a process group of
// its own, and killed with that group when t ends (and, on Linux, when the
// test binary dies). It does not wait for c: the test does.
func Own(t testing.TB, c *exec.Cmd) {
	c.SysProcAttr = ownAttr()
	t.Cleanup(func() {
		if c.Process != nil {
			KillGroup(c.Process.Pid)
		}
	})
}

// KillTagged sends SIGKILL to every process whose TagEnv is tag or starts
// with tag + "/", and says how many there were. Only Linux can read other
// processes' environments (/proc/PID/environ); elsewhere it does nothing.
func KillTagged(tag string) int {
	n := 0
	for _, pid := range allPIDs() {
		v := envOf(pid, TagEnv)
		if pid != os.Getpid() && (v == tag || strings.HasPrefix(v, tag+"/")) {
			if kill(pid) == nil {
				n++
			}
		}
	}
	return n
}
