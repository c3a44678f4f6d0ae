package portserver

import (
	"fmt"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// Limits bound what one local user, and one client process, can take from
// the portserver; 0 is no limit. A user is the peer's user ID as the kernel
// reports it, a client the process the ports are handed out to.
type Limits struct {
	UserPorts   int // ports held at once by the clients of one user
	ClientPorts int // ports held at once by one client process
	UserConns   int // connections open at once from one user
}

// DefaultLimits are the limits for a range: half of it per user and per
// client, and 256 connections per user (a test suite of 100 processes
// asking at once under load keeps more than 64 open).
func DefaultLimits(rg registry.Range) Limits {
	half := max(1, rg.Size()/2)
	return Limits{UserPorts: half, ClientPorts: half, UserConns: 256}
}

// prunePause is how long a user or client found at its limit is not
// looked at again: a refused flood costs no /proc reads.
const prunePause = time.Second

// ledger counts the connections open per user and the ports held per user
// and per client. A port counts until its owner is seen to have ended or
// the port is handed out again; owners are looked at only when a limit is
// reached.
type ledger struct {
	mu       sync.Mutex
	conns    map[int]int
	byPort   map[int]holding
	user     map[int]int
	client   map[probe.Identity]int
	prunedAt map[any]time.Time
}

type holding struct {
	uid   int
	owner probe.Identity
}

func newLedger() *ledger {
	return &ledger{conns: map[int]int{}, byPort: map[int]holding{}, user: map[int]int{},
		client: map[probe.Identity]int{}, prunedAt: map[any]time.Time{}}
}

// enter counts a connection of uid; false when uid already has limit open.
func (l *ledger) enter(uid, limit int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && l.conns[uid] >= limit {
		return false
	}
	l.conns[uid]++
	return true
}

func (l *ledger) leave(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[uid]--; l.conns[uid] <= 0 {
		delete(l.conns, uid)
	}
}

// room says which limit refuses one more port for owner, asked for by
// uid, and the key its log line is kept under; "" when none does.
func (l *ledger) room(uid int, owner probe.Identity, lim Limits) (key, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim.ClientPorts > 0 && l.client[owner] >= lim.ClientPorts {
		if l.prune(owner, func(h holding) bool { return h.owner == owner }); l.client[owner] >= lim.ClientPorts {
			return "client " + strconv.Itoa(owner.PID), fmt.Sprintf("the client pid %d holds %d ports, the limit per client", owner.PID, l.client[owner])
		}
	}
	if lim.UserPorts > 0 && l.user[uid] >= lim.UserPorts {
		if l.prune(uid, func(h holding) bool { return h.uid == uid }); l.user[uid] >= lim.UserPorts {
			return "user " + strconv.Itoa(uid), fmt.Sprintf("%s holds %d ports, the limit per user", describeUser(uid), l.user[uid])
		}
	}
	return "", ""
}

// prune forgets the ports of the holdings that match whose owner has
// ended; at most once per prunePause for one key. l.mu is held.
func (l *ledger) prune(key any, match func(holding) bool) {
	if time.Since(l.prunedAt[key]) < prunePause {
		return
	}
	l.prunedAt[key] = time.Now()
	alive := map[probe.Identity]bool{}
	for port, h := range l.byPort {
		if !match(h) {
			continue
		}
		live, seen := alive[h.owner]
		if !seen {
			live = probe.Alive(h.owner)
			alive[h.owner] = live
		}
		if !live {
			l.forget(port)
		}
	}
}

// hold counts port as held by owner for uid.
func (l *ledger) hold(port, uid int, owner probe.Identity) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(port)
	l.byPort[port] = holding{uid: uid, owner: owner}
	l.user[uid]++
	l.client[owner]++
}

// forget stops counting port; l.mu is held.
func (l *ledger) forget(port int) {
	h, ok := l.byPort[port]
	if !ok {
		return
	}
	delete(l.byPort, port)
	if l.user[h.uid]--; l.user[h.uid] <= 0 {
		delete(l.user, h.uid)
		delete(l.prunedAt, h.uid)
	}
	if l.client[h.owner]--; l.client[h.owner] <= 0 {
		delete(l.client, h.owner)
		delete(l.prunedAt, h.owner)
	}
}

// notices keeps a refusal that repeats from filling the log: one line
// when it starts, then at most one a minute, saying how many were not
// logged.
type notices struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

const noticeEvery = time.Minute

// say logs line for key unless key was logged within noticeEvery.
func (n *notices) say(log func(string), key, line string) {
	n.mu.Lock()
	if n.last == nil {
		n.last, n.held = map[string]time.Time{}, map[string]int{}
	}
	if len(n.last) > 1024 { // keys of clients long gone
		for k, t := range n.last {
			if time.Since(t) >= noticeEvery {
				delete(n.last, k)
				delete(n.held, k)
			}
		}
	}
	if t, ok := n.last[key]; ok && time.Since(t) < noticeEvery {
		n.held[key]++
		n.mu.Unlock()
		return
	}
	if h := n.held[key]; h > 0 {
		line += fmt.Sprintf(" (%d more like it since the last such line)", h)
	}
	n.last[key], n.held[key] = time.Now(), 0
	n.mu.Unlock()
	log(line)
}

// describeUser names a user: "user nobody (uid 65534)", or "uid 65534".
func describeUser(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return "user " + u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}
