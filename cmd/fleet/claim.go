package fleet

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/probe"
)

// One watchdog per host-id: the claim key names the watchdog that
// publishes the host; another that finds it held says so under
// conflicts/<host-id>/, under a lease of its own that it keeps while it
// waits, so the holder hears of each episode once.

func claimKey(id string) string { return Prefix + "claims/" + id }

func conflictsKey(id string) string { return Prefix + "conflicts/" + id + "/" }

// ConflictError is a host-id another live watchdog holds.
type ConflictError struct {
	HostID, Holder string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("host-id %s is already claimed by %s: give this host another --host-id", e.HostID, e.Holder)
}

// claim takes a lease, keeps it alive, and claims the host-id with it.
func (p *Publisher) claim(ctx context.Context) error {
	lease, err := p.Client.Grant(ctx, p.TTL())
	if err != nil {
		return err
	}
	claim := claimKey(p.HostID)
	resp, err := p.Client.Txn(ctx, []etcd.Compare{etcd.Missing(claim)},
		[]etcd.Op{etcd.OpPut(claim, p.self, lease)}, []etcd.Op{etcd.OpGet(claim)})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		holder := ""
		if r := resp.Responses; len(r) > 0 && r[0].Range != nil && len(r[0].Range.Kvs) > 0 {
			holder = string(r[0].Range.Kvs[0].Value)
		}
		if holder != p.self && !p.previousSelf(holder) {
			p.sayConflict(ctx, lease)
			return &ConflictError{HostID: p.HostID, Holder: holder}
		}
		// Our own claim, from before etcd went away, or that of this host's
		// previous watchdog, which is dead: move it to the new lease.
		if err := p.Client.Put(ctx, claim, p.self, lease); err != nil {
			return err
		}
	}
	p.endConflict(ctx)
	leaseCtx, leaseGone := context.WithCancel(p.run)
	lost := p.Client.KeepAlive(leaseCtx, lease, p.TTL())
	go func() {
		<-lost
		// Lost (etcd away past the TTL) or revoked: publish again under a
		// new lease.
		leaseGone()
		if p.run.Err() == nil { // on the way out, withdraw revokes it
			p.lease.CompareAndSwap(int64(lease), 0)
			p.wake()
		}
	}()
	go p.watchConflicts(leaseCtx)
	p.lease.Store(int64(lease))
	return nil
}

// sayConflict tells the holder of the host-id, once per episode: the first
// refusal puts a conflict key under lease, kept alive while this watchdog
// waits; later ones give their lease back.
func (p *Publisher) sayConflict(ctx context.Context, lease etcd.LeaseID) {
	if p.conflict.Load() != 0 {
		_ = p.Client.Revoke(ctx, lease)
		return
	}
	key := conflictsKey(p.HostID) + strconv.FormatInt(int64(lease), 16)
	if err := p.Client.Put(ctx, key, p.self, lease); err != nil {
		_ = p.Client.Revoke(ctx, lease)
		return
	}
	p.conflict.Store(int64(lease))
	lost := p.Client.KeepAlive(p.run, lease, p.TTL())
	go func() {
		<-lost
		if p.run.Err() == nil { // on the way out, withdraw revokes it
			p.conflict.CompareAndSwap(int64(lease), 0)
		}
	}()
}

// endConflict withdraws this watchdog's conflict key, if it has one.
func (p *Publisher) endConflict(ctx context.Context) {
	if l := p.conflict.Swap(0); l != 0 {
		_ = p.Client.Revoke(ctx, etcd.LeaseID(l))
	}
}

// previousSelf reports whether a claim was made by an earlier watchdog of
// this very host (same host name and boot) whose process is gone: a
// restart takes its host-id over at once instead of after the TTL.
func (p *Publisher) previousSelf(holder string) bool {
	var host, boot string
	var pid int
	if n, _ := fmt.Sscanf(holder, "%s pid %d boot %s", &host, &pid, &boot); n != 3 {
		return false
	}
	hn, _ := os.Hostname()
	return host == hn && boot == probe.BootID() && !probe.Alive(probe.Identity{PID: pid})
}

// watchConflicts logs, for as long as ctx (the lease) lasts, each episode
// of another watchdog trying this host-id: when its conflict key appears,
// and when it goes.
func (p *Publisher) watchConflicts(ctx context.Context) {
	var mu sync.Mutex
	who := map[string]string{} // conflict key → the watchdog it names
	p.Client.Watch(ctx, conflictsKey(p.HostID), true, func(ev etcd.Event) {
		mu.Lock()
		defer mu.Unlock()
		key := string(ev.KV.Key)
		switch {
		case ev.Deleted && who[key] != "":
			p.Log.Printf("[PORT-WATCHDOG] Fleet: the other watchdog (%s) no longer claims host-id %s", who[key], p.HostID)
			delete(who, key)
		case !ev.Deleted && ev.KV.Version == 1 && string(ev.KV.Value) != p.self:
			who[key] = string(ev.KV.Value)
			p.Log.Printf("[PORT-WATCHDOG] Fleet: another watchdog (%s) also claims host-id %s; it is not publishing", ev.KV.Value, p.HostID)
		}
	})
}

// withdraw revokes the leases on the way out: the host leaves the fleet at
// once instead of after the TTL, and so does a conflict key.
func (p *Publisher) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.endConflict(ctx)
	if l := p.lease.Load(); l != 0 {
		_ = p.Client.Revoke(ctx, etcd.LeaseID(l))
	}
}
