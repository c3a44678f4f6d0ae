package cmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// waitFor polls cond until it holds or the deadline (timeout, scaled by
// GRACECTL_TEST_TIMEOUT_SCALE) passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

func readRegistry(t *testing.T, root string) *registry.Registry {
	t.Helper()
	r, err := registry.Open(root, 10*time.Second).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// started is a running gracectl process with its output.
type started struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startGracectl(t *testing.T, root string, args ...string) *started {
	t.Helper()
	return startCmd(t, gracectlCmd(t, root, args...))
}

// startGracectlEnv is startGracectl with more environment.
func startGracectlEnv(t *testing.T, root string, env []string, args ...string) *started {
	t.Helper()
	c := gracectlCmd(t, root, args...)
	c.Env = append(c.Env, env...)
	return startCmd(t, c)
}

// startCmd starts c in a process group of its own, collecting its output.
// When t ends (passed, failed or timed out in a waitFor), the group is
// killed and c waited for; what left the group (a daemon) carries the
// test's tag and is killed after (testenv.Tag).
func startCmd(t *testing.T, c *exec.Cmd) *started {
	t.Helper()
	s := &started{cmd: c, out: &syncBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = s.out, s.out
	// A daemonized grandchild may hold the output pipe open.
	c.WaitDelay = 2 * time.Second
	t.Cleanup(func() {
		if c.Process != nil {
			<-s.done
		}
	})
	testenv.Own(t, c) // its cleanup, registered last, runs first
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = c.Wait(); close(s.done) }()
	return s
}

// wait waits for the process to exit, Scale(timeout) at most, and returns
// its exit code.
func (s *started) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	timeout = testenv.Scale(timeout)
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("gracectl did not exit within %s; output:\n%s", timeout, s.out)
	}
	return s.cmd.ProcessState.ExitCode()
}

func serveScript(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs", "examples", "serve.py")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid file "+path, 60*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// auditEvent is one audit log line, with the fields the tests look at.
type auditEvent struct {
	Action          string `json:"action"`
	Port            int    `json:"port"`
	DurationSeconds int64  `json:"duration_seconds"`
	Seq             uint64 `json:"seq"`
	Line            string `json:"-"`
}

// auditLog reads every line of every daily log under root, in file order,
// and fails the test on a line that is not one whole JSON object.
func auditLog(t *testing.T, root string) []auditEvent {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, registry.LogDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []auditEvent
	for _, lf := range files {
		data, err := os.ReadFile(lf)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var ev auditEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%s: a log line is not whole JSON: %q", lf, line)
			}
			ev.Line = line
			out = append(out, ev)
		}
	}
	return out
}

// checkAuditMatchesRegistry checks the audit trail against the registry:
// for every port, the allocate lines outnumber the release lines by one if
// the port is allocated and by none otherwise, and the lines' sequence
// numbers are 1 to the registry's audit_seq, each exactly once.
func checkAuditMatchesRegistry(t *testing.T, root string) {
	t.Helper()
	reg := readRegistry(t, root)
	net := map[int]int{}
	seqs := map[uint64]int{}
	for _, ev := range auditLog(t, root) {
		switch ev.Action {
		case "allocate", "adopt":
			net[ev.Port]++
		case "release":
			net[ev.Port]--
		}
		seqs[ev.Seq]++
	}
	for port, n := range net {
		want := 0
		if reg.Get(port) != nil {
			want = 1
		}
		if n != want {
			t.Errorf("port %d: %d more allocate than release lines, want %d (in registry: %v)", port, n, want, reg.Get(port) != nil)
		}
	}
	for _, a := range reg.Allocations {
		if net[a.Port] != 1 {
			t.Errorf("port %d is allocated but the log does not say so", a.Port)
		}
	}
	for seq := uint64(1); seq <= reg.AuditSeq; seq++ {
		if seqs[seq] != 1 {
			t.Errorf("audit seq %d appears %d times", seq, seqs[seq])
		}
	}
	if len(seqs) != int(reg.AuditSeq) {
		t.Errorf("%d distinct audit seqs, registry says %d", len(seqs), reg.AuditSeq)
	}
}

// probeListening reports whether something listens on port, from the
// host's socket table (probe.Snapshot): it never connects, since each
// connection to a test service that never accepts stays in its backlog,
// and once the backlog is full (128) the port looks dead to a connect.
func probeListening(port int) bool {
	return probe.TakeSnapshot().Listening(context.Background(), port)
}
