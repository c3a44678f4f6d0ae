// Package portserver serves the protocol of Google's portpicker portserver
// from the registry, for `gracectl watch --portserver ADDRESS`: test suites
// whose port picker honours PORTSERVER_ADDRESS then share the host's
// registry.
//
// The protocol: a client connects to a Unix stream socket (a leading @ is
// the abstract namespace), sends its pid as ASCII digits and a newline, and
// reads back a port and a newline. An empty reply means none; the client
// then picks a port of its own.
package portserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// MaxRequest is the longest request read: a pid and its newline.
const MaxRequest = 20

// Pool sizes: the server keeps up to PoolSize ports reserved in the
// registry (service PoolService, supervised by the watchdog) and refills
// when fewer than PoolLow are left.
const (
	PoolSize    = 32
	PoolLow     = 8
	PoolService = "gracectl_portserver"
)

// Server answers portserver requests with ports of Range. It answers from a
// pool of ports it has reserved in the registry, so that a request costs no
// registry write before the reply; a writer records the handed-out ports as
// owned by their clients in batches (group commit) moments later. Ports are
// handed out round-robin through the range.
type Server struct {
	Store *registry.Store
	Range registry.Range
	Log   func(string)

	mu      sync.Mutex
	pool    []*registry.Allocation
	next    int // the port after the last one reserved
	pending []registry.HandOut
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	self    probe.Identity
}

// Listen listens on a path or, with a leading @, an abstract socket name.
func Listen(addr string) (net.Listener, error) {
	if addr == "" || addr == "@" {
		return nil, errors.New("--portserver needs a path or @name")
	}
	if !strings.HasPrefix(addr, "@") {
		if info, err := os.Lstat(addr); err == nil && info.Mode()&os.ModeSocket != 0 {
			os.Remove(addr) // a stale socket of an earlier run; the watchdog lock says none runs
		}
	}
	l, err := net.Listen("unix", addr) // Go maps a leading @ to the abstract namespace
	if err != nil {
		return nil, fmt.Errorf("cannot serve the portserver on %s: %w", addr, err)
	}
	return l, nil
}

// Serve answers requests on l until it is closed, then records what is
// pending and gives back the pool's unused ports.
func (s *Server) Serve(l net.Listener) error {
	s.self = probe.Self()
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.writer()
	defer s.shutdown()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.handle(c)
	}
}

// handle answers one request; a malformed one is closed without a reply.
func (s *Server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	pid, ok := readPID(c)
	if !ok {
		return
	}
	id, err := probe.Identify(pid)
	if err != nil {
		return // no such process: never a reservation
	}
	a, err := s.take()
	if err != nil {
		s.log("[PORT-WATCHDOG] Portserver: no port for pid %d: %v", pid, err)
		_, _ = c.Write([]byte("\n")) // none: the client picks one itself
		return
	}
	name := registry.SafeText(probe.ProcessName(pid), registry.MaxServiceName)
	if strings.TrimSpace(name) == "" {
		name = "pid" + strconv.Itoa(pid)
	}
	s.mu.Lock()
	s.pending = append(s.pending, registry.HandOut{Port: a.Port, PoolID: a.ID, Owner: id, Service: name})
	s.mu.Unlock()
	s.wake()
	_, _ = c.Write([]byte(strconv.Itoa(a.Port) + "\n"))
}

func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) log(format string, args ...any) {
	if s.Log != nil {
		s.Log(fmt.Sprintf(format, args...))
	}
}

// take pops the next pool port, reserving more first when the pool is
// empty.
func (s *Server) take() (*registry.Allocation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pool) == 0 {
		if err := s.refillLocked(); err != nil {
			return nil, err
		}
	}
	a := s.pool[0]
	s.pool = s.pool[1:]
	if len(s.pool) < PoolLow {
		s.wake()
	}
	return a, nil
}

// refillLocked reserves ports for the pool, round-robin from s.next, free
// for TCP and UDP on IPv4 and IPv6; s.mu is held.
func (s *Server) refillLocked() error {
	if !s.Range.Contains(s.next) {
		s.next = s.Range.Start
	}
	// As many as the pool lacks; if the range has fewer free, just one.
	var got []*registry.Allocation
	var err error
	for _, n := range []int{min(PoolSize-len(s.pool), s.Range.Size()), 1} {
		got, err = s.Store.AllocateAll(context.Background(), registry.Request{
			Service: PoolService, Purpose: "portserver pool", Preferred: s.next, Range: s.Range,
			Supervisor: s.self, Portserver: true, Count: n,
		})
		var xe *registry.ExhaustedError
		if err == nil || !errors.As(err, &xe) {
			break
		}
	}
	if err != nil {
		return err
	}
	s.pool = append(s.pool, got...)
	s.next = got[len(got)-1].Port + 1
	return nil
}

// writer records handed-out ports in batches and keeps the pool filled.
func (s *Server) writer() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.flush()
			return
		}
		s.flush()
		s.mu.Lock()
		if len(s.pool) < PoolLow {
			if err := s.refillLocked(); err != nil {
				s.log("[PORT-WATCHDOG] Portserver: cannot refill its pool: %v", err)
			}
		}
		s.mu.Unlock()
	}
}

// flush records every pending hand-out in one registry change.
func (s *Server) flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := s.Store.HandOut(context.Background(), batch); err != nil {
		s.log("[PORT-WATCHDOG] Portserver: cannot record %d ports handed out: %v", len(batch), err)
	}
}

// shutdown records what is pending and gives back the unused pool.
func (s *Server) shutdown() {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	pool := s.pool
	s.pool = nil
	s.mu.Unlock()
	for _, a := range pool {
		_, _ = s.Store.Release(context.Background(), registry.ReleaseRequest{Port: a.Port, Force: true, By: "watchdog",
			Reason: "portserver stopped", Only: func(cur *registry.Allocation) bool { return cur.ID == a.ID }})
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
