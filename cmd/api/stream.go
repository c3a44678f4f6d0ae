package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gracectl/gracectl/registry"
)

// resetEvent starts a stream afresh: the client came back with an id this
// registry's watchdogs never gave. It carries the current state (the
// status document); the events that follow are the backlog asked for, then
// live ones.
type resetEvent struct {
	Timestamp   registry.Time  `json:"timestamp"`
	Action      string         `json:"action"` // "reset"
	Reason      string         `json:"reason"`
	LastEventID string         `json:"last_event_id"`
	Status      jsontext.Value `json:"status,omitzero"`
}

// stream is one client's event stream.
type stream struct {
	s      *Server
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	peer   peer
	unread int // what the client had not read at the last heartbeat; -1 unknown
}

// events serves GET /api/ports/events: the events after Last-Event-ID (the
// header, or ?last_event_id= for a client that cannot set it), or, without
// one, the last ?backlog=N changes (none by default) and then every event
// from now on.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	backlog := 0
	if v := r.URL.Query().Get("backlog"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxBacklog {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("backlog=%q: want a number from 0 to %d", v, MaxBacklog))
			return
		}
		backlog = n
	}
	p := peerOf(r)
	release, refused := s.slots.take(p.key)
	if refused != nil {
		s.metrics.refused.WithLabelValues(refused.reason).Inc()
		w.Header().Set("Retry-After", "10")
		writeError(w, refused.code, refused.msg)
		return
	}
	defer release()
	p.keepAlive(2 * s.heartbeat())
	st := &stream{s: s, w: w, rc: http.NewResponseController(w), r: r, peer: p, unread: -1}
	st.header()
	last, err := st.begin(backlog)
	if err == nil {
		st.follow(last)
	}
}

func (s *Server) heartbeat() time.Duration {
	if s.Heartbeat > 0 {
		return s.Heartbeat
	}
	return EventHeartbeat
}

func (st *stream) header() {
	_ = st.rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	st.w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(st.w, "retry: %d\n\n", eventRetryMillis)
	_ = st.rc.Flush()
}

// write sends raw bytes; the client has one heartbeat to take them.
func (st *stream) write(s string) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.s.heartbeat()))
	_, err := io.WriteString(st.w, s)
	return err
}

func (st *stream) send(id eventID, data []byte) error {
	return st.write("id: " + id.String() + "\ndata: " + string(data) + "\n\n")
}

func (st *stream) flush() error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.s.heartbeat()))
	return st.rc.Flush()
}

// begin sends what comes before the live events and returns the id they
// follow.
func (st *stream) begin(backlog int) (eventID, error) {
	b := st.s.broker
	given := st.r.Header.Get("Last-Event-ID")
	if given == "" {
		given = st.r.URL.Query().Get("last_event_id")
	}
	if given == "" {
		return st.recent(backlog, nil)
	}
	id, ok := parseEventID(given)
	switch {
	case !ok:
		return st.recent(backlog, &resetEvent{LastEventID: given, Reason: "the Last-Event-ID is not an id this API gives"})
	case b.future(id):
		return st.recent(backlog, &resetEvent{LastEventID: given, Reason: "the Last-Event-ID is ahead of this registry's events (another registry's, or a registry started over)"})
	}
	return id, nil
}

// recent sends the reset event, if any, and the last n changes, oldest
// first: from memory, and from the log before that.
func (st *stream) recent(n int, reset *resetEvent) (eventID, error) {
	evs, now, floor := st.s.broker.recent(n)
	var older []event
	if more := n - len(evs); more > 0 {
		_ = registry.LogBackward(st.s.Store.LogDir(), func(l registry.LogLine) bool {
			if l.Seq > 0 && l.Seq <= floor.seq {
				older = append(older, event{id: eventID{seq: l.Seq}, data: l.Raw})
			}
			return len(older) < more
		})
		slices.Reverse(older)
		evs = append(older, evs...)
	}
	if reset != nil {
		// Its id is just before the first event that follows, so that ids
		// keep growing on the stream.
		id := now
		if len(evs) > 0 {
			id = evs[0].id.before()
		}
		if err := st.reset(id, reset); err != nil {
			return now, err
		}
	}
	for _, e := range evs {
		if err := st.send(e.id, e.data); err != nil {
			return now, err
		}
	}
	return now, st.flush()
}

func (st *stream) reset(id eventID, ev *resetEvent) error {
	ev.Timestamp, ev.Action = registry.Now(), "reset"
	if c, err := st.s.snapshot(st.r.Context()); err == nil {
		ev.Status = jsontext.Value(c.status)
	}
	data, err := registry.MarshalLine(ev)
	if err != nil {
		return err
	}
	return st.send(id, data)
}

// follow sends every event after last as it comes, until the client goes,
// stops reading, or the server stops.
func (st *stream) follow(last eventID) {
	b := st.s.broker
	beat := time.NewTicker(st.s.heartbeat())
	defer beat.Stop()
	for {
		evs, gap, floor, wake := b.after(last)
		if gap {
			// Memory no longer reaches back to last: the audit lines from the log.
			var err error
			_ = registry.LogAfter(st.s.Store.LogDir(), last.seq, floor.seq, func(l registry.LogLine) bool {
				err = st.send(eventID{seq: l.Seq}, l.Raw)
				return err == nil
			})
			if err != nil || st.flush() != nil {
				return
			}
			last = floor
			continue
		}
		for _, e := range evs {
			if st.send(e.id, e.data) != nil {
				return
			}
			last = e.id
		}
		if len(evs) > 0 && st.flush() != nil {
			return
		}
		select {
		case <-wake:
		case <-beat.C:
			if st.idle() {
				st.s.metrics.dropped.Inc()
				st.peer.close()
				return
			}
			if st.write(": heartbeat\n\n") != nil || st.flush() != nil {
				return
			}
		case <-st.r.Context().Done():
			return
		case <-b.closed:
			return
		}
	}
}

// idle reports whether the client has read nothing since the last
// heartbeat although something was waiting for it then.
func (st *stream) idle() bool {
	n, ok := st.peer.unread()
	if !ok {
		st.unread = -1
		return false
	}
	stalled := st.unread > 0 && n >= st.unread
	st.unread = n
	return stalled
}
