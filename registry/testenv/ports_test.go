package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// inPrivatePool points Reserve at the ports of b (which the test holds in
// the shared lock folder, so no one else uses them) with a lock folder of
// its own.
func inPrivatePool(t *testing.T, b Block) {
	dir := LockDir
	LockDir = t.TempDir()
	t.Cleanup(func() { LockDir = dir })
	t.Setenv("GRACECTL_TEST_PORTS", b.String())
}

func TestBlocksDoNotOverlap(t *testing.T) {
	pool, err := poolRange()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 20 {
		b := Ports(t, 15)
		if b.Len() != 15 || (b.Start-pool.Start)%ChunkSize != 0 || b.Start < pool.Start || b.End > pool.End {
			t.Fatalf("block %s", b)
		}
		for p := b.Start; p < b.Start+2*ChunkSize; p++ {
			if seen[p] {
				t.Fatalf("block %s overlaps an earlier one at %d", b, p)
			}
			seen[p] = true
		}
	}
}

// A port something listens on (TCP or UDP) takes its chunk out, and the
// log says which port it was; the whole pool taken is an error that says so.
func TestBusyPortsAreSkippedAndNamed(t *testing.T) {
	held := Ports(t, 3*ChunkSize)
	inPrivatePool(t, held)
	l, err := net.Listen("tcp", held.Addr(3))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", held.Addr(ChunkSize+7))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	b, release, err := Reserve(ChunkSize, nil)
	if err != nil || b.Start != held.Port(2*ChunkSize) {
		t.Fatalf("got %s, %v; want the third chunk of %s", b, err, held)
	}
	defer release()
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	_, _, err = Reserve(ChunkSize, logf)
	if err == nil {
		t.Fatal("a block from a pool with no free chunk")
	}
	for _, want := range []string{fmt.Sprintf("port %d is in use (tcp)", held.Port(3)), fmt.Sprintf("port %d is in use (udp)", held.Port(ChunkSize+7))} {
		if !strings.Contains(strings.Join(logs, "\n"), want) || !strings.Contains(err.Error(), want) {
			t.Errorf("neither the log nor the error may lack %q:\n%s\n%v", want, strings.Join(logs, "\n"), err)
		}
	}
}

// The lock is the kernel's (flock), so it holds between processes: a block
// another test process holds is never handed out, and comes back when that
// process ends.
func TestBlockIsHeldAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTENV_HOLD") != "" {
		return
	}
	held := Ports(t, 2*ChunkSize)
	inPrivatePool(t, held)
	child := exec.Command(os.Args[0], "-test.run=^TestHoldForParent$")
	child.Env = append(os.Environ(), "TESTENV_HOLD=1", "TESTENV_LOCKS="+LockDir)
	in, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var theirs int
	fmt.Sscan(line, &theirs)
	for range 2 { // the pool has two chunks: we get the other one, then none
		if b, release, err := Reserve(ChunkSize, nil); err == nil {
			if b.Start == theirs {
				t.Fatalf("got %s, which the child holds", b)
			}
			defer release()
		}
	}
	in.Close()
	child.Wait()
	b, release, err := Reserve(ChunkSize, nil)
	if err != nil || b.Start != theirs {
		t.Fatalf("after the child ended: %s, %v; want %d", b, err, theirs)
	}
	release()
}

// TestHoldForParent is the child of TestBlockIsHeldAcrossProcesses: it
// reserves a block, prints its first port and holds it until stdin closes.
func TestHoldForParent(t *testing.T) {
	if os.Getenv("TESTENV_HOLD") == "" {
		t.Skip("a helper process of TestBlockIsHeldAcrossProcesses")
	}
	LockDir = os.Getenv("TESTENV_LOCKS")
	b, release, err := Reserve(ChunkSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	fmt.Println(b.Start)
	bufio.NewReader(os.Stdin).ReadString('\n')
}
