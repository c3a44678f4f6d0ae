package api

import (
	"cmp"
	"context"
	"fmt"
	"slices"
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
// the watchdog's cycles.
//
// Event ids survive restarts. An audit line's id is its seq, which the
// registry numbers once and for all. Any other event's id is
// SEQ-EPOCH-N: the seq of the audit line before it, the watchdog's epoch
// (higher at every start, Watcher.Epoch) and a count within the epoch. Ids
// order as (SEQ, EPOCH, N), an audit line's as (SEQ, 0, 0), so each event
// orders after every event before it, across any number of restarts. A
// client that comes back with Last-Event-ID gets every event after it:
// from memory (the last EventBacklog events of this watchdog), and the
// audit lines memory no longer holds from the log itself.

// Stream limits.
const (
	EventBacklog     = 500
	MaxBacklog       = 500 // ?backlog=N at most
	MaxStreams       = 64
	EventHeartbeat   = 15 * time.Second
	EventFollowTick  = 250 * time.Millisecond // a stat of the registry and today's log
	eventRetryMillis = 2000
)

// eventID is an event's place in the order of all events (see above).
type eventID struct{ seq, epoch, n uint64 }

func (a eventID) cmp(b eventID) int {
	return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.epoch, b.epoch), cmp.Compare(a.n, b.n))
}

func (a eventID) String() string {
	if a.epoch == 0 {
		return strconv.FormatUint(a.seq, 10)
	}
	return fmt.Sprintf("%d-%d-%d", a.seq, a.epoch, a.n)
}

// before is an id that orders before a and after every event before a
// but, for an audit line, the other events that came with the audit line
// before it.
func (a eventID) before() eventID {
	switch {
	case a.epoch == 0 && a.seq > 0:
		return eventID{seq: a.seq - 1}
	case a.epoch == 0:
		return a
	case a.n > 1:
		return eventID{a.seq, a.epoch, a.n - 1}
	}
	return eventID{seq: a.seq}
}

// parseEventID reads an id this API gave; false for anything else.
func parseEventID(s string) (eventID, bool) {
	parts := strings.Split(s, "-")
	var v [3]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || i >= len(v) || p != strconv.FormatUint(n, 10) {
			return eventID{}, false
		}
		v[i] = n
	}
	switch {
	case len(parts) == 1:
		return eventID{seq: v[0]}, true
	case len(parts) == 3 && v[1] > 0 && v[2] > 0:
		return eventID{v[0], v[1], v[2]}, true
	}
	return eventID{}, false
}

type event struct {
	id    eventID
	data  []byte
	cycle bool // a cycle's summary: not counted in a backlog of changes
}

// broker keeps the backlog and wakes the streams.
type broker struct {
	mu      sync.Mutex
	epoch   uint64
	last    eventID // the last id given
	n       uint64  // events of this epoch that are not audit lines
	floor   eventID // every event after it is in backlog
	backlog []event
	wake    chan struct{} // closed and replaced on every event
	closed  chan struct{}
	once    sync.Once
}

// newBroker starts after the audit line seq, the last in the log.
func newBroker(epoch, seq uint64) *broker {
	start := eventID{seq: seq}
	return &broker{epoch: epoch, last: start, floor: start, wake: make(chan struct{}), closed: make(chan struct{})}
}

// publish sends v (an event type below) to every stream.
func (b *broker) publish(v any) {
	data, err := registry.MarshalLine(v)
	if err != nil {
		return
	}
	_, cycle := v.(cycleEvent)
	b.add(0, data, cycle)
}

// publishAudit sends an audit log line. Lines come in seq order; one that
// does not (no seq, or a registry started over) gets an id after the last.
func (b *broker) publishAudit(l registry.LogLine) { b.add(l.Seq, l.Raw, false) }

func (b *broker) add(seq uint64, data []byte, cycle bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq > b.last.seq {
		b.last = eventID{seq: seq}
	} else {
		b.n++
		b.last = eventID{b.last.seq, b.epoch, b.n}
	}
	b.backlog = append(b.backlog, event{id: b.last, data: data, cycle: cycle})
	if drop := len(b.backlog) - EventBacklog; drop > 0 {
		b.floor = b.backlog[drop-1].id
		b.backlog = slices.Delete(b.backlog, 0, drop)
	}
	close(b.wake)
	b.wake = make(chan struct{})
}

// after returns the events after id that memory holds, and the channel
// closed at the next one. gap is set when memory no longer reaches back to
// id: the audit lines up to floor are then to be read from the log.
func (b *broker) after(id eventID) (evs []event, gap bool, floor eventID, wake <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id.cmp(b.floor) < 0 {
		return nil, true, b.floor, b.wake
	}
	i, _ := slices.BinarySearchFunc(b.backlog, id, func(e event, id eventID) int { return e.id.cmp(id) })
	for i < len(b.backlog) && b.backlog[i].id.cmp(id) <= 0 {
		i++
	}
	return slices.Clone(b.backlog[i:]), false, b.floor, b.wake
}

// future reports whether id was never given out by this registry's
// watchdogs: beyond the last event, or of a later epoch.
func (b *broker) future(id eventID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return id.cmp(b.last) > 0 || id.epoch > b.epoch
}

// recent returns the last n events that are not cycle summaries, oldest
// first, the position after them, and floor: older changes are the audit
// lines up to floor in the log.
func (b *broker) recent(n int) (evs []event, now, floor eventID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.backlog) - 1; i >= 0 && len(evs) < n; i-- {
		if !b.backlog[i].cycle {
			evs = append(evs, b.backlog[i])
		}
	}
	slices.Reverse(evs)
	return evs, b.last, b.floor
}

func (b *broker) close() { b.once.Do(func() { close(b.closed) }) }

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
// went since the last cycle, and counts the squatters in the history.
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
	s.history.Unmanaged(time.Now(), len(rep.Unmanaged))
}

// follower is where FollowChanges is in the log and the registry.
type follower struct {
	logPath  string
	logOff   int64
	regStamp string
	statuses map[string]string // allocation ID → health_status
}

// startFollowing notes where the log ends and what the registry holds now,
// before the API serves anything: events start after that point. It
// returns the last audit seq in the log.
func (s *Server) startFollowing(now time.Time) uint64 {
	f := &s.follow
	f.statuses = map[string]string{}
	f.regStamp = registry.FileStamp(s.Store.Path())
	path, off, seq, _ := registry.LogEnd(s.Store.LogDir(), now)
	f.logPath, f.logOff = path, off
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := s.Store.Read(ctx); err == nil {
		for _, a := range r.Allocations {
			f.statuses[a.ID] = a.HealthStatus
		}
		_ = s.history.Seed(s.Store.LogDir(), s.Range, r, now)
	}
	return seq
}

// FollowChanges publishes the audit log's new lines and the health status
// changes of the registry, whoever made them, until ctx ends. It looks
// every EventFollowTick at the files' inode, size and mtime, and reads them
// only when those changed.
func (s *Server) FollowChanges(ctx context.Context) {
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
		s.followLog()
		s.followRegistry(ctx)
	}
}

// followLog publishes the whole lines appended to the log since the last
// look (today's file; at midnight, the rest of yesterday's first). An
// allocate line comes before the status changes it leads to.
func (s *Server) followLog() {
	f := &s.follow
	publish := func(l registry.LogLine) bool { s.broker.publishAudit(l); return true }
	if p := registry.LogPath(s.Store.LogDir(), time.Now()); p != f.logPath {
		_, _ = registry.ScanLog(f.logPath, f.logOff, publish)
		f.logPath, f.logOff = p, 0 // a new day
	}
	if off, err := registry.ScanLog(f.logPath, f.logOff, publish); err == nil {
		f.logOff = off
	}
}

// followRegistry publishes the health status changes in the registry and
// records its counts in the history.
func (s *Server) followRegistry(ctx context.Context) {
	f := &s.follow
	st := registry.FileStamp(s.Store.Path())
	if st == f.regStamp {
		return
	}
	r, err := s.Store.Read(ctx)
	if err != nil {
		return
	}
	f.regStamp = st
	next := map[string]string{}
	for _, a := range r.Sorted() {
		next[a.ID] = a.HealthStatus
		if prev, ok := f.statuses[a.ID]; ok && prev != a.HealthStatus {
			s.broker.publish(statusEvent{Timestamp: registry.Now(), Action: "status", Port: a.Port,
				ServiceName: a.ServiceName, PortName: a.PortName, HealthStatus: a.HealthStatus, Previous: prev})
		}
	}
	f.statuses = next
	s.history.Allocations(time.Now(), s.Range, r)
}
