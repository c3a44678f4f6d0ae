// Package testenv gives a test what it needs from a shared, busy host: a
// block of TCP ports that no other test holds (in this process, another
// test process, or another clone's suite) and nothing else listens on,
// deadlines scaled for a loaded machine, and child processes that never
// outlive the test. Only tests import it.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gofrs/flock"
)

// ChunkSize is the unit ports are locked in: a block of n ports takes
// ceil(n/ChunkSize) consecutive chunks, each with its own lock file.
const ChunkSize = 10

// DefaultPool is where blocks come from: below the ephemeral range (32768+),
// far from the default range 8000-8100 and from 29000-31999, which people
// working on gracectl use by hand. GRACECTL_TEST_PORTS=START-END replaces it.
const DefaultPool = "20000-28999"

// LockDir holds one lock file per chunk, shared by every test process on
// the host (any user: the folder is sticky and world-writable, like /tmp).
var LockDir = filepath.Join(os.TempDir(), "gracectl-test-ports")

// Block is a run of consecutive ports, Start to End inclusive.
type Block struct{ Start, End int }

// Port is the i-th port of the block (0 is Start).
func (b Block) Port(i int) int {
	if i < 0 || b.Start+i > b.End {
		panic(fmt.Sprintf("testenv: port %d of a block of %d", i, b.Len()))
	}
	return b.Start + i
}

// P is Port as a string, for command lines.
func (b Block) P(i int) string { return strconv.Itoa(b.Port(i)) }

// Addr is 127.0.0.1 and the i-th port.
func (b Block) Addr(i int) string { return "127.0.0.1:" + b.P(i) }

// Len is the number of ports in the block.
func (b Block) Len() int { return b.End - b.Start + 1 }

// String is the block as gracectl's --range takes it: "START-END".
func (b Block) String() string { return fmt.Sprintf("%d-%d", b.Start, b.End) }

// Sub is ports i to j of the block as a range: "START+i-START+j".
func (b Block) Sub(i, j int) string { return b.P(i) + "-" + b.P(j) }

// Ports reserves n consecutive free ports for t and releases them when t
// ends (t.Cleanup). It fails t when the whole pool is taken.
func Ports(t testing.TB, n int) Block {
	t.Helper()
	b, release, err := Reserve(n, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return b
}

// Reserve finds n consecutive ports in the pool whose chunks no one has
// locked and on which nothing is bound (TCP or UDP, IPv4 or IPv6, any
// address), locks them, and returns the block and the function that
// unlocks it. The search starts at a random chunk, so processes starting
// together spread out. A chunk locked by someone else is passed over
// silently; a port found in use is reported through logf (nil: not at all)
// and its chunk passed over.
func Reserve(n int, logf func(format string, args ...any)) (Block, func(), error) {
	if n < 1 {
		return Block{}, nil, fmt.Errorf("testenv: %d ports asked for", n)
	}
	pool, err := poolRange()
	if err != nil {
		return Block{}, nil, err
	}
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return Block{}, nil, fmt.Errorf("testenv: %v", err)
	}
	// MkdirAll is subject to the umask; every user's tests share the folder
	// (only its owner can widen it, so the error is ignored).
	if fi, err := os.Lstat(LockDir); err == nil && fi.Mode()&os.ModeSticky == 0 {
		os.Chmod(LockDir, 0o777|os.ModeSticky)
	}
	chunks := (pool.End - pool.Start + 1) / ChunkSize
	need := (n + ChunkSize - 1) / ChunkSize
	if need > chunks {
		return Block{}, nil, fmt.Errorf("testenv: %d ports asked for, the pool %s has %d", n, pool, chunks*ChunkSize)
	}
	first := rand.IntN(chunks)
	var taken []string
	for tried := 0; tried < chunks; {
		c := (first + tried) % chunks
		if c+need > chunks { // a block does not wrap around the pool's end
			tried += chunks - c
			continue
		}
		start := pool.Start + c*ChunkSize
		b := Block{Start: start, End: start + n - 1}
		release, busy, err := tryBlock(b, need)
		if err == nil {
			return b, release, nil
		}
		if logf != nil && busy > 0 {
			logf("testenv: ports %s: %v; trying the next block", b, err)
		}
		if busy > 0 {
			taken = append(taken, err.Error())
		}
		tried += max(1, (busy-start)/ChunkSize+1)
	}
	return Block{}, nil, fmt.Errorf("testenv: no %d free ports in %s (others' tests hold the rest; in use: %s)", n, pool, strings.Join(taken, "; "))
}

// tryBlock locks the need chunks of b and checks every port of b. On
// failure it unlocks what it locked and returns the error and, when a port
// was in use, that port (0 when a chunk was locked by someone else).
func tryBlock(b Block, need int) (func(), int, error) {
	var locks []*flock.Flock
	release := func() {
		for _, l := range locks {
			l.Unlock()
		}
	}
	for i := range need {
		l := flock.New(filepath.Join(LockDir, strconv.Itoa(b.Start+i*ChunkSize)+".lock"),
			flock.SetFlag(os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW), flock.SetPermissions(0o644))
		ok, err := l.TryLock()
		if err != nil || !ok {
			release()
			if err == nil {
				err = errors.New("locked")
			}
			return nil, 0, err
		}
		locks = append(locks, l)
	}
	for p := b.Start; p <= b.End; p++ {
		if err := Free(p); err != nil {
			release()
			return nil, p, err
		}
	}
	return release, 0, nil
}

// Free reports whether nothing is bound on port: it binds and closes a TCP
// listener and a UDP socket on the IPv4 and IPv6 wildcards (IPv6 where the
// host has it). A wildcard bind fails when anything listens on the port on
// any address, as gracectl's own check does.
func Free(port int) error {
	for _, network := range []string{"tcp4", "tcp6", "udp4", "udp6"} {
		addr := ":" + strconv.Itoa(port)
		var err error
		if strings.HasPrefix(network, "tcp") {
			var l net.Listener
			if l, err = net.Listen(network, addr); err == nil {
				l.Close()
			}
		} else {
			var c net.PacketConn
			if c, err = net.ListenPacket(network, addr); err == nil {
				c.Close()
			}
		}
		if err == nil || (strings.HasSuffix(network, "6") && !errors.Is(err, syscall.EADDRINUSE)) {
			continue // no IPv6 on this host
		}
		return fmt.Errorf("port %d is in use (%s)", port, network[:3])
	}
	return nil
}

func poolRange() (Block, error) {
	s := os.Getenv("GRACECTL_TEST_PORTS")
	if s == "" {
		s = DefaultPool
	}
	a, b, ok := strings.Cut(s, "-")
	start, err1 := strconv.Atoi(strings.TrimSpace(a))
	end, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || start < 1 || end > 65535 || end-start+1 < ChunkSize {
		return Block{}, fmt.Errorf("testenv: GRACECTL_TEST_PORTS=%q is not START-END with at least %d ports", s, ChunkSize)
	}
	return Block{Start: start, End: end}, nil
}
