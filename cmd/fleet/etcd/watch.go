package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The watch: /v3/watch, a stream. The gateway sends the one create request
// the body holds, then one {"result": …} object per answer of etcd's, for
// as long as the connection lasts.

// Event is a change of a watched key.
type Event struct {
	Deleted bool // else a put
	KV      KeyValue
}

type watchRequest struct {
	Create struct {
		Key           []byte `json:"key"`
		RangeEnd      []byte `json:"range_end,omitzero"`
		StartRevision int64  `json:"start_revision,omitzero,string"`
	} `json:"create_request"`
}

type watchMessage struct {
	Result *struct {
		Header          Header `json:"header"`
		Canceled        bool   `json:"canceled"`
		CompactRevision int64  `json:"compact_revision,string"`
		CancelReason    string `json:"cancel_reason"`
		Events          []struct {
			Type string   `json:"type"` // "DELETE", or left out for a put
			KV   KeyValue `json:"kv"`
		} `json:"events"`
	} `json:"result"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Watch calls fn with every change of key (of every key under it, with
// prefix) from now until ctx ends. A broken stream is opened again, on
// whichever member answers, from the revision after the last one seen, so
// no change is missed unless etcd compacted it away meanwhile.
func (c *Client) Watch(ctx context.Context, key string, prefix bool, fn func(Event)) {
	var req watchRequest
	req.Create.Key = []byte(key)
	if prefix {
		req.Create.RangeEnd = PrefixEnd(key)
	}
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		next, err := c.watchOnce(ctx, req, fn)
		if next > req.Create.StartRevision {
			req.Create.StartRevision = next
			backoff = 500 * time.Millisecond
		}
		var compacted *compactedError
		if errors.As(err, &compacted) {
			req.Create.StartRevision = 0 // from now: what was compacted is gone
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

type compactedError struct{ rev int64 }

func (e *compactedError) Error() string {
	return fmt.Sprintf("watched revisions compacted up to %d", e.rev)
}

// watchOnce follows one stream until it ends, and returns the revision to
// start again from: the one after the last change it passed on, or after
// the revision the watch started at (0 when it never started).
func (c *Client) watchOnce(ctx context.Context, req watchRequest, fn func(Event)) (int64, error) {
	body, err := c.open(ctx, "/v3/watch", req, 0)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	dec := jsontext.NewDecoder(body)
	rev := req.Create.StartRevision
	for {
		var m watchMessage
		if err := json.UnmarshalDecode(dec, &m); err != nil {
			return rev, err
		}
		switch r := m.Result; {
		case m.Error != nil:
			return rev, errors.New(m.Error.Message)
		case r == nil:
		case r.CompactRevision > 0:
			return rev, &compactedError{rev: r.CompactRevision}
		case r.Canceled:
			return rev, errors.New(r.CancelReason)
		case rev == 0: // created, from now
			rev = r.Header.Revision + 1
		default:
			for _, ev := range r.Events {
				fn(Event{Deleted: ev.Type == "DELETE", KV: ev.KV})
				rev = max(rev, ev.KV.ModRevision+1)
			}
		}
	}
}
