package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/cmd/fleet/etcd/etcdtest"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The client against a real etcd member (etcdtest; skips without etcd).

func TestKVAndTxn(t *testing.T) {
	c := etcdtest.Start(t, testenv.Ports(t, 2), 1, nil).Client()
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"/t/a", "/t/b\x00\xff", "/t/c", "/u"} {
		if err := c.Put(ctx, k, "v"+k, 0); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Prefix(ctx, "/t/", false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range r.Kvs {
		got = append(got, fmt.Sprintf("%q=%q", kv.Key, kv.Value))
	}
	if want := `"/t/a"="v/t/a" "/t/b\x00\xff"="v/t/b\x00\xff" "/t/c"="v/t/c"`; strings.Join(got, " ") != want {
		t.Errorf("prefix read: %s, want %s", strings.Join(got, " "), want)
	}
	// A condition that holds runs the puts; one that does not runs the
	// reads of the other branch.
	resp, err := c.Txn(ctx, []etcd.Compare{etcd.Missing("/claim")}, []etcd.Op{etcd.OpPut("/claim", "me", 0)}, []etcd.Op{etcd.OpGet("/claim")})
	if err != nil || !resp.Succeeded {
		t.Fatalf("first claim: %v %+v", err, resp)
	}
	resp, err = c.Txn(ctx, []etcd.Compare{etcd.Missing("/claim")}, []etcd.Op{etcd.OpPut("/claim", "other", 0)}, []etcd.Op{etcd.OpGet("/claim")})
	if err != nil || resp.Succeeded || string(resp.Responses[0].Range.Kvs[0].Value) != "me" {
		t.Fatalf("second claim: %v %+v", err, resp)
	}
	resp, err = c.Txn(ctx, []etcd.Compare{etcd.ValueIs("/claim", "me")}, []etcd.Op{etcd.OpDelete("/t/a"), etcd.OpDelete("/t/c")}, nil)
	if err != nil || !resp.Succeeded {
		t.Fatalf("delete while the claim holds: %v %+v", err, resp)
	}
	if r, _ := c.Prefix(ctx, "/t/", true); len(r.Kvs) != 1 || r.Kvs[0].Value != nil {
		t.Errorf("after the deletes (keys only): %+v", r.Kvs)
	}
	// A refusal of etcd's is an *etcd.Error, not an unreachable cluster.
	var ee *etcd.Error
	if err := c.Put(ctx, "/x", "y", 12345); !errors.As(err, &ee) || !etcd.IsLeaseNotFound(err) {
		t.Errorf("put under a lease that does not exist: %v", err)
	}
}

func TestLeaseKeepAliveAndRevoke(t *testing.T) {
	c := etcdtest.Start(t, testenv.Ports(t, 2), 1, nil).Client()
	defer c.Close()
	ctx := context.Background()
	id, err := c.Grant(ctx, 2*time.Second)
	if err != nil || id == 0 {
		t.Fatalf("grant: %v %d", err, id)
	}
	if err := c.Put(ctx, "/leased", "x", id); err != nil {
		t.Fatal(err)
	}
	lost := c.KeepAlive(ctx, id, 2*time.Second)
	// Kept alive well past its TTL: the key is there all along. (What is
	// shown is that the lease outlives its TTL, so the test watches it for
	// a while; no duration is asserted.)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		select {
		case <-lost:
			t.Fatal("the lease was lost while kept alive")
		default:
		}
		if r, err := c.Prefix(ctx, "/leased", false); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("the leased key is gone while its lease was kept alive (%v)", err)
		}
	}
	// Revoked: its keys go, and the keep-alive says it is lost.
	if err := c.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the keep-alive to notice the revoke", 10*time.Second, func() bool {
		select {
		case <-lost:
			return true
		default:
			return false
		}
	})
	if r, _ := c.Prefix(ctx, "/leased", false); len(r.Kvs) != 0 {
		t.Error("the leased key outlived its revoked lease")
	}
}

// A watch sees puts and deletes, and goes on after etcd restarts, without
// missing what changed while its stream was down.
func TestWatchSurvivesRestart(t *testing.T) {
	m := etcdtest.Start(t, testenv.Ports(t, 2), 1, nil)
	c := m.Client()
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, "/w/", true, func(ev etcd.Event) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%v %s=%s", ev.Deleted, ev.KV.Key, ev.KV.Value))
		})
	}()
	defer func() { cancel(); <-done }()
	has := func(want string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return strings.Contains(strings.Join(seen, "\n"), want)
		}
	}
	// The watch starts in the background: put until it is seen.
	testenv.WaitFor(t, "the first put", 10*time.Second, func() bool {
		c.Put(ctx, "/w/a", "1", 0)
		return has("false /w/a=1")()
	})
	c.Put(ctx, "/elsewhere", "x", 0)
	if _, err := c.Txn(ctx, nil, []etcd.Op{etcd.OpDelete("/w/a")}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the delete", 10*time.Second, has("true /w/a="))
	m.Kill(0)
	m.StartMember(0)
	m.WaitHealthy()
	if err := c.Put(ctx, "/w/b", "2", 0); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "a put after etcd's restart", 20*time.Second, has("false /w/b=2"))
	if has("/elsewhere")() {
		t.Error("the watch saw a key outside its prefix")
	}
}

// No member answering: an error naming each endpoint tried, at once when
// nothing listens, and at the deadline when a member never answers.
func TestUnreachable(t *testing.T) {
	ports := testenv.Ports(t, 3)
	etcdtest.Hang(t, ports.Addr(0))
	c := etcd.New([]string{ports.Addr(1), ports.Addr(2)}, nil)
	_, err := c.Prefix(context.Background(), "/", false)
	var ue *etcd.UnreachableError
	if !errors.As(err, &ue) || err.Error() != "no answer from etcd at "+ports.Addr(1)+", "+ports.Addr(2)+" (connection refused)" {
		t.Errorf("nothing listening: %v", err)
	}
	c = etcd.New([]string{ports.Addr(1), ports.Addr(0)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = c.Put(ctx, "/k", "v", 0)
	want := "no answer from etcd at " + ports.Addr(1) + " (connection refused), " + ports.Addr(0) + " (no answer before the deadline)"
	if !errors.As(err, &ue) || err.Error() != want {
		t.Errorf("a member that never answers:\n got %v\nwant %s", err, want)
	}
}

// A read asks the next member when one has not answered after a second:
// a member that hangs does not keep the fleet from being read.
func TestReadPassesAHungMember(t *testing.T) {
	ports := testenv.Ports(t, 3)
	m := etcdtest.Start(t, ports, 1, nil)
	etcdtest.Hang(t, ports.Addr(2))
	c := etcd.New([]string{ports.Addr(2), m.Endpoints()[0]}, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	if _, err := c.Prefix(ctx, "/", false); err != nil {
		t.Fatalf("a read with the first member hung: %v", err)
	}
}
