package watchdog

import (
	"sync"
	"time"

	"github.com/gracectl/gracectl/registry"
)

// The pool over the last hour, for the dashboard's chart: how many ports of
// the range were allocated, how many of those had trouble, and how many
// were served without an allocation. The watchdog keeps it in memory, in
// steps of HistoryStep, each holding the highest counts seen during it; at
// start it is seeded from the audit log, which tells allocations and
// releases but not health or unmanaged listeners, so those two are unknown
// (null) before the watchdog's start.

// History window and resolution.
const (
	HistoryWindow = time.Hour
	HistoryStep   = 10 * time.Second
)

// Troubled reports whether a health status is an issue: the allocation is
// counted as unhealthy in the pool's history, and on the dashboard's map.
func Troubled(status string) bool {
	switch status {
	case registry.StatusUnhealthy, registry.StatusNotListening, registry.StatusDead, registry.StatusOrphaned:
		return true
	}
	return false
}

// counts is one step's values; -1 is unknown.
type counts struct{ allocated, unhealthy, unmanaged int }

func (c counts) max(o counts) counts {
	return counts{max(c.allocated, o.allocated), max(c.unhealthy, o.unhealthy), max(c.unmanaged, o.unmanaged)}
}

// History is the pool's recent past. Its methods are safe for concurrent
// use.
type History struct {
	mu    sync.Mutex
	first int64    // the step of steps[0] (Unix time / HistoryStep)
	steps []counts // the highest counts of each step, oldest first
	cur   counts   // the counts now
}

func stepOf(t time.Time) int64 { return t.Unix() / int64(HistoryStep/time.Second) }

// NewHistory starts a history whose counts are unknown until recorded.
func NewHistory() *History { return &History{cur: counts{-1, -1, -1}} }

// advance brings the steps up to the one of t, carrying the current counts
// into the steps between, and drops the steps older than the window.
func (h *History) advance(t time.Time) {
	now := stepOf(t)
	if len(h.steps) == 0 {
		h.first, h.steps = now, []counts{h.cur}
		return
	}
	last := h.first + int64(len(h.steps)) - 1
	if now <= last {
		return // the same step, or the clock went back: count into the last one
	}
	// Nothing was recorded since: the counts held all along.
	if now-last >= int64(windowSteps) {
		h.first, h.steps = now-int64(windowSteps)+1, h.steps[:0]
		last = h.first - 1
	}
	for s := last + 1; s <= now; s++ {
		h.steps = append(h.steps, h.cur)
	}
	if drop := len(h.steps) - windowSteps; drop > 0 {
		h.steps, h.first = h.steps[drop:], h.first+int64(drop)
	}
}

const windowSteps = int(HistoryWindow / HistoryStep)

func (h *History) set(t time.Time, c counts) {
	h.advance(t)
	h.cur = c
	h.steps[len(h.steps)-1] = h.steps[len(h.steps)-1].max(c)
}

// Allocations records the registry's allocations in the range at t: the
// allocated and unhealthy counts.
func (h *History) Allocations(t time.Time, rg registry.Range, reg *registry.Registry) {
	c := counts{}
	for _, a := range reg.Allocations {
		if rg.Contains(a.Port) {
			c.allocated++
			if Troubled(a.HealthStatus) {
				c.unhealthy++
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c.unmanaged = h.cur.unmanaged
	h.set(t, c)
}

// Unmanaged records the number of unmanaged listeners a cycle found at t.
func (h *History) Unmanaged(t time.Time, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.cur
	c.unmanaged = n
	h.set(t, c)
}

// HistoryDoc is GET /api/ports/history: one value per step for the last
// hour, oldest first, from Start; null where the count is not known.
type HistoryDoc struct {
	Start       registry.Time `json:"start"`
	StepSeconds int           `json:"step_seconds"`
	Allocated   []*int        `json:"allocated"`
	Unhealthy   []*int        `json:"unhealthy"`
	Unmanaged   []*int        `json:"unmanaged"`
}

// Doc is the last hour up to now.
func (h *History) Doc(now time.Time) *HistoryDoc {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(now)
	end := stepOf(now)
	start := end - int64(windowSteps) + 1
	sec := int64(HistoryStep / time.Second)
	d := &HistoryDoc{Start: registry.Time{Time: time.Unix(start*sec, 0).UTC()}, StepSeconds: int(sec)}
	for s := start; s <= end; s++ {
		c := counts{-1, -1, -1}
		if i := s - h.first; i >= 0 && i < int64(len(h.steps)) {
			c = h.steps[i]
		}
		d.Allocated = append(d.Allocated, known(c.allocated))
		d.Unhealthy = append(d.Unhealthy, known(c.unhealthy))
		d.Unmanaged = append(d.Unmanaged, known(c.unmanaged))
	}
	return d
}

func known(n int) *int {
	if n < 0 {
		return nil
	}
	return &n
}

// Seed fills the last hour's allocated counts from the audit log in dir,
// working back from the registry as it is now: before a release its port
// was allocated, before an allocate it was not. Health and unmanaged
// listeners are not in the log; they stay unknown until recorded.
func (h *History) Seed(dir string, rg registry.Range, reg *registry.Registry, now time.Time) error {
	held := map[int]bool{}
	for _, a := range reg.Allocations {
		if rg.Contains(a.Port) {
			held[a.Port] = true
		}
	}
	type change struct {
		at        time.Time
		allocated int // after the change
	}
	var changes []change // newest first
	since := now.Add(-HistoryWindow - HistoryStep)
	err := registry.LogBackward(dir, func(l registry.LogLine) bool {
		if l.Timestamp.Before(since) {
			return false
		}
		if !rg.Contains(l.Port) {
			return true
		}
		switch l.Action {
		case "allocate", "adopt":
			changes = append(changes, change{l.Timestamp.Time, len(held)})
			delete(held, l.Port)
		case "release":
			changes = append(changes, change{l.Timestamp.Time, len(held)})
			held[l.Port] = true
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.steps, h.cur = nil, counts{len(held), -1, -1}
	h.advance(since)
	for i := len(changes) - 1; i >= 0; i-- {
		h.set(changes[i].at, counts{changes[i].allocated, -1, -1})
	}
	return err
}
