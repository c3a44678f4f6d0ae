// Package portserver serves the protocol of Google's portpicker portserver
// from the registry, for `gracectl watch --portserver`: test suites whose
// port picker honours PORTSERVER_ADDRESS then share the host's registry.
//
// The protocol: a client connects to a Unix stream socket (a leading @ is
// the abstract namespace), sends a pid as ASCII digits and a newline, and
// reads back a port and a newline; the port is then owned by that pid. No
// reply means no port (portserver.py answers so too); the client then picks
// a port of its own.
//
// Only the kernel is believed: the peer's credentials (SO_PEERCRED) say
// which user asks, a client may claim only a process of that user (root
// any), and each user and client may hold a limited number of ports and
// keep a limited number of connections open. Ports come from a pool
// reserved in the registry (registry.Pool), each checked under the
// registry lock before it is handed out.
//
// It never hands out a port that is not the pool's, never replaces an
// owner, and never believes a PID the kernel does not vouch for.
package portserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// MaxRequest is the longest request read: a pid and its newline.
const MaxRequest = 20

// The pool: the server keeps a tenth of the range, at most PoolSize ports,
// reserved in the registry (service PoolService, held by the watchdog),
// and tops it up when a quarter of that is left.
const (
	PoolSize    = 128
	PoolService = "gracectl_portserver"
)

// IdleTimeout bounds a connection's whole life: a client that sends no
// request within it is disconnected.
const IdleTimeout = 5 * time.Second

// FlushDelay is how long the writer gathers hand-outs before recording
// them, so that a run of requests costs one registry write: each write
// encodes the whole registry, and the watchdog reads it again after each.
const FlushDelay = 200 * time.Millisecond

// Server answers portserver requests with ports of Range. It answers from a
// pool of ports reserved in the registry, so that a request costs no
// registry write before the reply; a writer records the handed-out ports as
// owned by their clients in batches (group commit) moments later. Ports are
// handed out round-robin through the range.
type Server struct {
	Store  *registry.Store
	Range  registry.Range
	Limits Limits
	Log    registry.LogFunc

	pool    *registry.Pool
	ledger  *ledger
	notices notices
	mu      sync.Mutex
	pending []registry.HandOut
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// Serve answers requests on l until it is closed, then records what is
// pending and gives back the pool's unused ports. An error accepting a
// connection (out of file descriptors) is logged once and retried with a
// growing pause, as net/http's server does; it never stops the server.
func (s *Server) Serve(l net.Listener) error {
	size := min(PoolSize, max(1, s.Range.Size()/10))
	s.pool = &registry.Pool{Store: s.Store, Range: s.Range, Service: PoolService, Purpose: "portserver pool",
		Supervisor: probe.Self(), Size: size, Low: max(1, size/4)}
	s.ledger = newLedger()
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.writer()
	var handlers sync.WaitGroup
	defer s.shutdown(&handlers)
	var pause time.Duration
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			if pause == 0 {
				s.Log.Printf("[PORT-WATCHDOG] Portserver: cannot accept connections (%s); retrying", acceptErrText(err))
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		if pause > 0 {
			s.Log.Printf("[PORT-WATCHDOG] Portserver: accepting connections again")
			pause = 0
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			s.handle(uc)
		}()
	}
}

func acceptErrText(err error) string {
	text := registry.ErrnoText(err)
	if strings.Contains(text, "too many open files") {
		return "out of file descriptors: " + text
	}
	return text
}

// handle answers one connection. Whatever is refused is closed without a
// reply.
func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	peer, err := probe.PeerOf(c)
	if err != nil {
		return
	}
	if !s.ledger.enter(peer.UID, s.Limits.UserConns) {
		s.notices.say(s.Log, fmt.Sprintf("conns %d", peer.UID), fmt.Sprintf(
			"[PORT-WATCHDOG] Portserver: %s has %d connections open, the limit per user; further connections are closed at once", describeUser(peer.UID), s.Limits.UserConns))
		return
	}
	defer s.ledger.leave(peer.UID)
	deadline := time.Now().Add(IdleTimeout)
	_ = c.SetDeadline(deadline)
	pid, ok := readPID(c)
	if !ok {
		return
	}
	client, why := claim(peer, pid)
	if why != "" {
		s.notices.say(s.Log, fmt.Sprintf("claim %d %s", peer.UID, why), fmt.Sprintf(
			"[PORT-WATCHDOG] Portserver: refused a request of %s (pid %d) for pid %d: %s", describeUser(peer.UID), peer.PID, pid, why))
		return
	}
	if key, why := s.ledger.room(peer.UID, client.ID, s.Limits); why != "" {
		s.notices.say(s.Log, key, "[PORT-WATCHDOG] Portserver: "+why+"; further requests get no port")
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	a, err := s.pool.Take(ctx)
	if err != nil {
		s.notices.say(s.Log, "no port", fmt.Sprintf("[PORT-WATCHDOG] Portserver: no port for pid %d: %v", pid, err))
		return
	}
	s.ledger.hold(a.Port, peer.UID, client.ID)
	name := registry.SafeText(client.Name, registry.MaxServiceName)
	if strings.TrimSpace(name) == "" {
		name = "pid" + strconv.Itoa(pid)
	}
	s.mu.Lock()
	s.pending = append(s.pending, registry.HandOut{Port: a.Port, PoolID: a.ID, Owner: client.ID, Service: name})
	s.mu.Unlock()
	s.wake()
	_, _ = c.Write([]byte(strconv.Itoa(a.Port) + "\n"))
}

// claim finds the process a request names, believing only the kernel: a
// client may claim itself, or another process of its own user in its own
// PID namespace (root: of any user); never a kernel thread, which never
// exits. It returns why not when it may not.
func claim(peer probe.Peer, pid int) (probe.ProcessInfo, string) {
	if peer.PID <= 0 {
		return probe.ProcessInfo{}, "the client's process cannot be seen from the portserver's PID namespace"
	}
	other := pid != peer.PID
	if other {
		// Another process: its PID means what it means here only if the
		// client shares the portserver's PID namespace.
		self, _ := probe.SelfNamespaces()
		if ns, ok := probe.PIDNamespaceOf(peer.PID); !ok || (self != 0 && ns != self) {
			return probe.ProcessInfo{}, "the client runs in another PID namespace, where it may claim only itself"
		}
	}
	info, err := probe.Inspect(pid, other)
	switch {
	case err != nil:
		return info, "no such process"
	case info.Kernel:
		return info, "it is a kernel thread"
	case other && !info.OwnedBy(peer.UID):
		return info, fmt.Sprintf("it belongs to uid %d, and a client may claim only its own processes", info.UID)
	}
	return info, ""
}

func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// writer records handed-out ports in batches, which also keep the pool
// filled.
func (s *Server) writer() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.flush()
			return
		}
		// Gather what arrives meanwhile into the same write.
		select {
		case <-time.After(FlushDelay):
		case <-s.stop:
		}
		s.flush()
	}
}

// flush records every pending hand-out in one registry change; what could
// not be written is kept for the next one.
func (s *Server) flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	refused, err := s.pool.Record(context.Background(), batch)
	if err != nil {
		s.Log.Printf("[PORT-WATCHDOG] Portserver: cannot record %d ports handed out: %v", len(batch), err)
		s.mu.Lock()
		s.pending = append(batch, s.pending...)
		s.mu.Unlock()
		return
	}
	for _, h := range refused {
		s.Log.Printf("[PORT-WATCHDOG] Portserver: port %d, handed out to pid %d, was released or registered to another process before the hand-out was recorded; its registry entry is left as it is", h.Port, h.Owner.PID)
	}
}

// shutdown waits for the requests in progress, records what is pending
// and gives back the unused pool.
func (s *Server) shutdown(handlers *sync.WaitGroup) {
	handlers.Wait()
	close(s.stop)
	<-s.done
	if err := s.pool.Close(context.Background(), "portserver stopped"); err != nil {
		s.Log.Printf("[PORT-WATCHDOG] Portserver: cannot give back its pool: %v", err)
	}
}

// readPID reads "PID\n": digits only, at most MaxRequest bytes, pid > 1.
func readPID(c net.Conn) (int, bool) {
	line, err := bufio.NewReaderSize(c, 64).ReadSlice('\n')
	if err != nil || len(line) > MaxRequest {
		return 0, false
	}
	digits := strings.TrimSuffix(string(line), "\n")
	pid, err := strconv.Atoi(digits)
	if err != nil || digits == "" || digits[0] == '+' || digits[0] == '-' || pid <= 1 {
		return 0, false
	}
	return pid, true
}
