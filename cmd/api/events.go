package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// The event stream, GET /api/ports/events: Server-Sent Events, one per
// change, each a line of JSON with the audit log's and the API's field
// names. Allocations, registrations and releases are the audit log's own
// lines, as any gracectl process appended them; health status changes come
// from comparing registry snapshots; cycles and unmanaged listeners from
// the watchdog's cycles. The last EventBacklog events are kept, so a client
// that reconnects with Last-Event-ID misses nothing.

// Stream limits.
const (
	EventBacklog    = 500
	MaxStreams      = 64
	EventHeartbeat  = 15 * time.Second
	EventFollowTick = 250 * time.Millisecond // a stat of the registry and today's log
)

type event struct {
	id   uint64
	data []byte
}

// broker keeps the backlog and wakes the streams.
type broker struct {
	mu      sync.Mutex
	next    uint64
	backlog []event
	wake    chan struct{} // closed and replaced on every event
	streams int
	closed  chan struct{}
	once    sync.Once
}

func newBroker() *broker {
	return &broker{next: 1, wake: make(chan struct{}), closed: make(chan struct{})}
}

func (b *broker) publish(v any) {
	data, err := registry.MarshalLine(v)
	if err != nil {
		return
	}
	b.publishLine(data)
}

func (b *broker) publishLine(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backlog = append(b.backlog, event{id: b.next, data: data})
	b.next++
	if len(b.backlog) > EventBacklog {
		b.backlog = b.backlog[len(b.backlog)-EventBacklog:]
	}
	close(b.wake)
	b.wake = make(chan struct{})
}

// since returns the events after id and the channel closed at the next.
func (b *broker) since(id uint64) ([]event, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []event
	for _, e := range b.backlog {
		if e.id > id {
			out = append(out, e)
		}
	}
	return out, b.wake
}

func (b *broker) close() { b.once.Do(func() { close(b.closed) }) }

// events serves the stream.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	b := s.broker
	b.mu.Lock()
	if b.streams >= MaxStreams {
		b.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many event streams (at most %d)", MaxStreams))
		return
	}
	b.streams++
	last := b.next - 1 // a new client starts from now
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.streams--; b.mu.Unlock() }()
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if id, err := strconv.ParseUint(v, 10, 64); err == nil {
			last = id
		}
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 2000\n\n")
	_ = rc.Flush()
	beat := time.NewTicker(EventHeartbeat)
	defer beat.Stop()
	for {
		evs, wake := b.since(last)
		for _, e := range evs {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.id, e.data); err != nil {
				return
			}
			last = e.id
		}
		if len(evs) > 0 {
			if rc.Flush() != nil {
				return
			}
		}
		select {
		case <-wake:
		case <-beat.C:
			if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-b.closed:
			return
		}
	}
}

// statusEvent is a health status change.
type statusEvent struct {
	Timestamp    registry.Time `json:"timestamp"`
	Action       string        `json:"action"` // "status"
	Port         int           `json:"port"`
	ServiceName  string        `json:"service_name"`
	PortName     string        `json:"port_name,omitzero"`
	HealthStatus string        `json:"health_status"`
	Previous     string        `json:"previous"`
}

// cycleEvent is a watchdog cycle's summary.
type cycleEvent struct {
	Timestamp  registry.Time `json:"timestamp"`
	Action     string        `json:"action"` // "cycle"
	Summary    string        `json:"summary"`
	Active     int           `json:"active"`
	Dead       int           `json:"dead"`
	Issues     int           `json:"issues"`
	DurationMS float64       `json:"duration_ms"`
}

// unmanagedEvent is a squatter seen ("unmanaged") or gone ("unmanaged_gone").
type unmanagedEvent struct {
	Timestamp registry.Time `json:"timestamp"`
	Action    string        `json:"action"`
	watchdog.Unmanaged
}

// observeEvents publishes a cycle's summary and the squatters that came or
// went since the last cycle.
func (s *Server) observeEvents(rep *watchdog.Report) {
	s.broker.publish(cycleEvent{Timestamp: rep.StartedAt, Action: "cycle", Summary: rep.Summary(),
		Active: rep.Active, Dead: rep.Dead, Issues: rep.Issues, DurationMS: rep.DurationMS})
	now := map[int]watchdog.Unmanaged{}
	for _, u := range rep.Unmanaged {
		now[u.Port] = u
		if _, ok := s.squatters[u.Port]; !ok {
			s.broker.publish(unmanagedEvent{Timestamp: rep.StartedAt, Action: "unmanaged", Unmanaged: u})
		}
	}
	for port, u := range s.squatters {
		if _, ok := now[port]; !ok {
			s.broker.publish(unmanagedEvent{Timestamp: rep.StartedAt, Action: "unmanaged_gone", Unmanaged: u})
		}
	}
	s.squatters = now
}

// FollowChanges publishes the audit log's new lines and the health status
// changes of the registry, whoever made them, until ctx ends. It looks
// every EventFollowTick at the files' inode, size and mtime, and reads them
// only when those changed.
func (s *Server) FollowChanges(ctx context.Context) {
	var (
		regStamp string
		statuses = map[string]string{} // allocation ID → health_status
		logPath  string
		logOff   int64
	)
	if r, err := s.Store.Read(ctx); err == nil {
		for _, a := range r.Allocations {
			statuses[a.ID] = a.HealthStatus
		}
	}
	regStamp = registry.FileStamp(s.Store.Path())
	logPath = registry.LogPath(s.Store.LogDir(), time.Now())
	if info, err := os.Stat(logPath); err == nil {
		logOff = info.Size() // from now on, not the day's history
	}
	tick := time.NewTicker(EventFollowTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.broker.closed:
			return
		case <-tick.C:
		}
		// Today's log first: an allocate line comes before its status.
		if p := registry.LogPath(s.Store.LogDir(), time.Now()); p != logPath {
			logPath, logOff = p, 0 // a new day
		}
		logOff = s.followLog(logPath, logOff)
		if st := registry.FileStamp(s.Store.Path()); st != regStamp {
			regStamp = st
			r, err := s.Store.Read(ctx)
			if err != nil {
				continue
			}
			next := map[string]string{}
			for _, a := range r.Sorted() {
				next[a.ID] = a.HealthStatus
				if prev, ok := statuses[a.ID]; ok && prev != a.HealthStatus {
					s.broker.publish(statusEvent{Timestamp: registry.Now(), Action: "status", Port: a.Port,
						ServiceName: a.ServiceName, PortName: a.PortName, HealthStatus: a.HealthStatus, Previous: prev})
				}
			}
			statuses = next
		}
	}
}

// followLog publishes the whole lines appended to path since off and
// returns the new offset. Only the new bytes are read.
func (s *Server) followLog(path string, off int64) int64 {
	chunk, _, err := registry.ReadFileFrom(path, off)
	if err != nil || len(chunk) == 0 {
		return off
	}
	end := strings.LastIndexByte(string(chunk), '\n')
	if end < 0 {
		return off // a line still being written
	}
	for _, line := range strings.Split(string(chunk[:end]), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			s.broker.publishLine([]byte(line))
		}
	}
	return off + int64(end) + 1
}
