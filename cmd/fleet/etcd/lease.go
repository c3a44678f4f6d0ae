package etcd

import (
	"context"
	"time"
)

// Leases: /v3/lease/grant, keepalive and revoke.

type leaseRequest struct {
	TTL int64   `json:"TTL,omitzero,string"`
	ID  LeaseID `json:"ID,omitzero,string"`
}

type leaseResponse struct {
	ID  LeaseID `json:"ID,string"`
	TTL int64   `json:"TTL,string"`
}

// Grant takes a lease of ttl (whole seconds, at least one).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	resp := new(leaseResponse)
	if err := c.call(ctx, "/v3/lease/grant", leaseRequest{TTL: max(int64(ttl/time.Second), 1)}, resp, 0); err != nil {
		return 0, err
	}
	return resp.ID, nil
}

// Revoke ends a lease and deletes every key under it.
func (c *Client) Revoke(ctx context.Context, id LeaseID) error {
	return c.call(ctx, "/v3/lease/revoke", leaseRequest{ID: id}, new(struct{}), 0)
}

// renew renews a lease once, and returns its time to live from now: 0 when
// etcd no longer has it. The gateway turns the keep-alive stream into one
// answer per request, {"result": …}.
func (c *Client) renew(ctx context.Context, id LeaseID) (time.Duration, error) {
	var resp struct {
		Result leaseResponse `json:"result"`
	}
	if err := c.call(ctx, "/v3/lease/keepalive", leaseRequest{ID: id}, &resp, 0); err != nil {
		return 0, err
	}
	return time.Duration(resp.Result.TTL) * time.Second, nil
}

// KeepAlive renews the lease every third of its ttl until ctx ends or the
// lease is lost, and then closes the channel it returned. The lease is lost
// when etcd says it has no such lease (revoked, or run out), or when no
// renewal got through before it would have run out; failed renewals are
// retried every half second until then, as etcd's own client does.
func (c *Client) KeepAlive(ctx context.Context, id LeaseID, ttl time.Duration) <-chan struct{} {
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		expires := time.Now().Add(ttl)
		wait := ttl / 3
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if time.Now().After(expires) {
				return
			}
			rctx, cancel := context.WithDeadline(ctx, expires)
			left, err := c.renew(rctx, id)
			cancel()
			switch {
			case IsLeaseNotFound(err):
				return
			case err != nil:
				wait = 500 * time.Millisecond
			case left <= 0:
				return
			default:
				expires = time.Now().Add(left)
				wait = left / 3
			}
		}
	}()
	return lost
}
