package fleet

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// MaxOps is how many operations one transaction may carry (etcd's
// --max-txn-ops default is 128); a host with more allocations is published
// in several (docs/fleet.md).
const MaxOps = 120

// Publisher keeps a host's allocations in etcd, under one lease.
type Publisher struct {
	Client   *etcd.Client
	Store    *registry.Store
	HostID   string
	Range    registry.Range
	Version  string
	Interval time.Duration // the watchdog's: the lease is 3 of them, at least 15 s
	Log      func(string)

	mu        sync.Mutex
	lastCycle registry.Time
	kick      chan struct{}
	lease     atomic.Int64    // the etcd.LeaseID, 0 for none
	run       context.Context // Run's: the lease is kept alive until it ends
	self      string          // this watchdog, as the claim on the host-id names it
	down      bool            // the last attempt failed (logged once)
}

// TTL is the lease's time to live.
func (p *Publisher) TTL() time.Duration { return max(3*p.Interval, 15*time.Second) }

// Cycle tells the publisher a cycle ended: its time goes in the host
// record, and everything is published again (the backstop).
func (p *Publisher) Cycle(at registry.Time) {
	p.mu.Lock()
	p.lastCycle = at
	p.mu.Unlock()
	p.wake()
}

func (p *Publisher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Publisher) log(format string, args ...any) {
	if p.Log != nil {
		p.Log(fmt.Sprintf(format, args...))
	}
}

// Run publishes until ctx ends: at once, whenever the registry file changes
// (a stat every 250 ms), and after every cycle; on failure it retries with
// backoff, logging once, and publishes everything again when etcd is back.
// It never holds up the registry: it only reads it.
func (p *Publisher) Run(ctx context.Context) {
	p.kick = make(chan struct{}, 1)
	p.run = ctx
	hn, _ := os.Hostname()
	p.self = fmt.Sprintf("%s pid %d boot %s", hn, os.Getpid(), probe.BootID())
	stamp := ""
	backoff := time.Second
	retry := time.NewTimer(0)
	defer retry.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	defer p.withdraw()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if s := registry.FileStamp(p.Store.Path()); s != stamp {
				stamp = s
			} else {
				continue
			}
		case <-p.kick:
		case <-retry.C:
		}
		if err := p.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !p.down {
				p.log("[PORT-WATCHDOG] Fleet: cannot publish to etcd (%v); working locally, retrying", err)
				p.down = true
			}
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		if p.down {
			p.log("[PORT-WATCHDOG] Fleet: etcd is back; host %s published again", p.HostID)
			p.down = false
		}
		backoff = time.Second
	}
}

// publish puts the host record and every allocation, replacing what was
// there, in one transaction (several past MaxOps), under the lease.
func (p *Publisher) publish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if p.lease.Load() == 0 {
		if err := p.claim(ctx); err != nil {
			return err
		}
	}
	reg, err := p.Store.Read(ctx)
	if err != nil {
		return err
	}
	hn, _ := os.Hostname()
	p.mu.Lock()
	host := Host{ID: p.HostID, Hostname: hn, Range: p.Range, WatchdogPID: os.Getpid(), Version: p.Version,
		LastCycle: p.lastCycle, Published: registry.Now()}
	p.mu.Unlock()
	hb, err := registry.MarshalLine(host)
	if err != nil {
		return err
	}
	lease := etcd.LeaseID(p.lease.Load())
	ops := []etcd.Op{etcd.OpPut(HostKey(p.HostID), string(hb), lease)}
	keep := map[string]bool{}
	for _, a := range reg.Sorted() {
		ab, err := registry.MarshalLine(a)
		if err != nil {
			return err
		}
		keep[PortKey(p.HostID, a.Port)] = true
		ops = append(ops, etcd.OpPut(PortKey(p.HostID, a.Port), string(ab), lease))
	}
	// Ports released since: deleted by key (etcd refuses a transaction
	// whose delete range overlaps its puts).
	old, err := p.Client.Prefix(ctx, HostKey(p.HostID)+"/ports/", true)
	if err != nil {
		return err
	}
	for _, kv := range old.Kvs {
		if !keep[string(kv.Key)] {
			ops = append(ops, etcd.OpDelete(string(kv.Key)))
		}
	}
	// The claim must still be ours: another watchdog with this host-id is
	// an error, not a second writer.
	mine := []etcd.Compare{etcd.ValueIs(claimKey(p.HostID), p.self)}
	for len(ops) > 0 {
		n := min(len(ops), MaxOps)
		resp, err := p.Client.Txn(ctx, mine, ops[:n], nil)
		if etcd.IsLeaseNotFound(err) {
			p.lease.Store(0) // etcd lost it (its data wiped): claim again
		}
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			p.lease.Store(0)
			return fmt.Errorf("host-id %s is claimed by another watchdog", p.HostID)
		}
		ops = ops[n:]
	}
	return nil
}

// claim takes a lease, keeps it alive, and claims the host-id with it. A
// claim held by another live watchdog is an error, said in both logs: this
// one's, and the other's through a conflict key it notices.
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
			_ = p.Client.Put(ctx, Prefix+"conflicts/"+p.HostID, p.self, lease)
			_ = p.Client.Revoke(ctx, lease)
			return fmt.Errorf("host-id %s is already claimed by %s: give this host another --host-id", p.HostID, holder)
		}
		// Our own claim, from before etcd went away, or that of this host's
		// previous watchdog, which is dead: move it to the new lease.
		if err := p.Client.Put(ctx, claim, p.self, lease); err != nil {
			return err
		}
	}
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

// watchConflicts logs, for as long as ctx (the lease) lasts, when another
// watchdog tries this host-id.
func (p *Publisher) watchConflicts(ctx context.Context) {
	p.Client.Watch(ctx, Prefix+"conflicts/"+p.HostID, false, func(ev etcd.Event) {
		if !ev.Deleted && string(ev.KV.Value) != p.self {
			p.log("[PORT-WATCHDOG] Fleet: another watchdog (%s) also claims host-id %s; it is not publishing", ev.KV.Value, p.HostID)
		}
	})
}

// withdraw revokes the lease on the way out: the host leaves the fleet at
// once instead of after the TTL.
func (p *Publisher) withdraw() {
	if p.lease.Load() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.Client.Revoke(ctx, etcd.LeaseID(p.lease.Load()))
}
