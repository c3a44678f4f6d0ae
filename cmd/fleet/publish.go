package fleet

import (
	"context"
	"errors"
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

// AttemptTimeout bounds one attempt to publish.
const AttemptTimeout = 5 * time.Second

// Publisher keeps a host's allocations in etcd, under one lease.
type Publisher struct {
	Client   *etcd.Client
	Store    *registry.Store
	HostID   string // checked by ValidateHostID
	Range    registry.Range
	Version  string
	Interval time.Duration // the watchdog's: the lease is 3 of them, at least 15 s
	Log      registry.LogFunc

	mu        sync.Mutex
	lastCycle registry.Time
	watchdog  *Watchdog
	kick      chan struct{}
	lease     atomic.Int64    // the etcd.LeaseID, 0 for none
	conflict  atomic.Int64    // while another watchdog holds the host-id: the lease of our conflict key
	run       context.Context // Run's: the leases are kept alive until it ends
	self      string          // this watchdog, as the claim on the host-id names it
	state     error           // what the last attempt found: nil, a *ConflictError or why etcd failed
}

// TTL is the lease's time to live.
func (p *Publisher) TTL() time.Duration { return max(3*p.Interval, 15*time.Second) }

// RetryDown is how soon an attempt that failed for want of etcd is tried
// again (or the watchdog's interval, when shorter): a host republishes
// within that of etcd's return.
const RetryDown = time.Second

// Cycle tells the publisher a cycle ended: its time and the watchdog's
// counts go in the host record, and everything is published again (the
// backstop).
func (p *Publisher) Cycle(at registry.Time, wd Watchdog) {
	p.mu.Lock()
	p.lastCycle, p.watchdog = at, &wd
	p.mu.Unlock()
	p.wake()
}

func (p *Publisher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends: at once, whenever the registry file changes
// (a stat every 250 ms), and after every cycle. Without etcd it retries
// every RetryDown (or interval); refused the host-id, with backoff to 30 s.
// Each change of state is logged once. It never holds up the registry: it
// only reads it.
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
	var conflict *ConflictError
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s := registry.FileStamp(p.Store.Path())
			if s == stamp || errors.As(p.state, &conflict) {
				continue
			}
			stamp = s
		case <-p.kick:
			if errors.As(p.state, &conflict) {
				continue // only the backoff asks again
			}
		case <-retry.C:
		}
		err := p.publish(ctx)
		if ctx.Err() != nil {
			return
		}
		p.settle(err)
		switch {
		case err == nil:
			backoff = time.Second
		case errors.As(err, &conflict):
			retry.Reset(backoff)
			backoff = min(2*backoff, 30*time.Second)
		default:
			retry.Reset(min(RetryDown, p.Interval))
		}
	}
}

// settle logs what an attempt found when it differs from the last one's.
func (p *Publisher) settle(err error) {
	var was, now *ConflictError
	wasConflict, isConflict := errors.As(p.state, &was), errors.As(err, &now)
	switch {
	case err == nil && wasConflict:
		p.Log.Printf("[PORT-WATCHDOG] Fleet: host-id %s is free again; host %s published", p.HostID, p.HostID)
	case err == nil && p.state != nil:
		p.Log.Printf("[PORT-WATCHDOG] Fleet: etcd is back; host %s published again", p.HostID)
	case isConflict && (!wasConflict || was.Holder != now.Holder):
		p.Log.Printf("[PORT-WATCHDOG] Fleet: %v; not publishing while it is", err)
	case err != nil && !isConflict && (p.state == nil || wasConflict):
		p.Log.Printf("[PORT-WATCHDOG] Fleet: cannot publish to etcd (%v); working locally, retrying", err)
	}
	p.state = err
}

// publish puts the host record and every allocation, replacing what was
// there, in one transaction (several past MaxOps), under the lease. A lease
// etcd no longer has (it ran out while etcd was away, or etcd's data is
// new) is taken again at once.
func (p *Publisher) publish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, AttemptTimeout)
	defer cancel()
	err := p.publishOnce(ctx)
	if etcd.IsLeaseNotFound(err) {
		p.lease.Store(0)
		err = p.publishOnce(ctx)
	}
	return err
}

func (p *Publisher) publishOnce(ctx context.Context) error {
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
		LastCycle: p.lastCycle, Published: registry.Now(), Watchdog: p.watchdog}
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
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			p.lease.Store(0)
			return fmt.Errorf("host-id %s is no longer this watchdog's", p.HostID)
		}
		ops = ops[n:]
	}
	return nil
}
