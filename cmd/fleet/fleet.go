// Package fleet publishes a host's registry to etcd and reads the fleet
// from it (`watch --fleet`, `status --fleet`, …). The file registry stays
// the truth for each host's ports: etcd holds a copy for people and tools
// that look across hosts, and never decides a port: nothing here writes
// the registry. docs/fleet.md has the
// key layout and the failure table.
package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/registry"
)

// ReadTimeout is how long a read of the fleet waits for etcd unless told
// otherwise (--fleet-timeout).
const ReadTimeout = 5 * time.Second

// Prefix is where everything lives.
const Prefix = "/gracectl/v1/"

// HostKey is a host's record; its ports are under HostKey(id)+"/ports/".
func HostKey(id string) string { return Prefix + "hosts/" + id }

// PortKey is one allocation of a host.
func PortKey(id string, port int) string { return HostKey(id) + "/ports/" + strconv.Itoa(port) }

// Config is how to reach etcd.
type Config struct {
	Endpoints []string // host:port
	CACert    string   // TLS: the CA that signed etcd's certificate
	Cert, Key string   // TLS client certificate (etcd --client-cert-auth)
}

// ParseEndpoints reads etcd://HOST:PORT[,HOST:PORT...] (the scheme may be
// left out).
func ParseEndpoints(spec string) ([]string, error) {
	spec = strings.TrimPrefix(strings.TrimSpace(spec), "etcd://")
	var out []string
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "etcd://")
		if e == "" {
			continue
		}
		if !validEndpoint(e) {
			return nil, fmt.Errorf("fleet endpoint %q: want HOST:PORT", e)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("no etcd endpoint given: want etcd://HOST:PORT[,HOST:PORT...]")
	}
	return out, nil
}

// validEndpoint: HOST:PORT ([V6]:PORT for an IPv6 address).
func validEndpoint(e string) bool {
	host, port, err := net.SplitHostPort(e)
	if err != nil || host == "" {
		return false
	}
	_, err = registry.ParsePort(port)
	return err == nil
}

// Connect makes a client of etcd's JSON gateway (it does not wait for
// etcd to answer).
func Connect(c Config) (*etcd.Client, error) {
	var tlsConf *tls.Config
	if c.CACert != "" || c.Cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CACert != "" {
			b, err := os.ReadFile(c.CACert)
			if err != nil {
				return nil, err
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("%s: no certificate", c.CACert)
			}
		}
		if c.Cert != "" {
			pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				return nil, err
			}
			t.Certificates = []tls.Certificate{pair}
		}
		tlsConf = t
	}
	return etcd.New(c.Endpoints, tlsConf), nil
}

// Host is a host's record in etcd.
type Host struct {
	ID          string         `json:"host_id"`
	Hostname    string         `json:"hostname"`
	Range       registry.Range `json:"port_range"`
	WatchdogPID int            `json:"watchdog_pid"`
	Version     string         `json:"version"`
	LastCycle   registry.Time  `json:"last_cycle,omitzero"`
	Published   registry.Time  `json:"published"`
	// Watchdog is what the host's watchdog counted up to its last cycle;
	// absent before its first cycle.
	Watchdog *Watchdog `json:"watchdog,omitzero"`
}

// Watchdog is a host's watchdog as its status report has it.
type Watchdog struct {
	IntervalSeconds float64 `json:"check_interval_seconds"`
	ChecksPerformed int64   `json:"checks_performed"`
	IssuesDetected  int64   `json:"issues_detected"`
	StaleCleaned    int64   `json:"stale_cleaned"`
	MonitoredPorts  int     `json:"monitored_ports"`
}

// Name is how the fleet names a host: its id, and its host name beside it
// when that differs.
func (h Host) Name() string {
	if h.Hostname == "" || h.Hostname == h.ID {
		return h.ID
	}
	return h.ID + " (" + h.Hostname + ")"
}

// HostView is a host and its allocations, as read from etcd.
type HostView struct {
	Host        Host                   `json:"host"`
	Allocations []*registry.Allocation `json:"allocations"`
	Allocated   int                    `json:"allocated"`
	Available   int                    `json:"available"`
	Unhealthy   int                    `json:"unhealthy"` // not active, starting or reserved
}

// View is the fleet, as `status --fleet --json` prints it.
type View struct {
	Hosts     []*HostView `json:"hosts"`
	Allocated int         `json:"allocated"`
	Available int         `json:"available"`
	Unhealthy int         `json:"unhealthy"`
	// Warnings name the keys under hosts/ that were ignored because they
	// do not parse as the layout says (docs/fleet.md).
	Warnings []string `json:"warnings,omitzero"`
}

// Read reads the whole fleet in one range read. A key that does not parse
// as the layout says is ignored, with a warning in the view: it is never
// read as another host's.
func Read(ctx context.Context, cli *etcd.Client) (*View, error) {
	resp, err := cli.Prefix(ctx, Prefix+"hosts/", false)
	if err != nil {
		return nil, err
	}
	return ViewOf(resp.Kvs), nil
}

// ReadWithin is Read with a deadline, timeout from now. Its error says
// which endpoints were tried, and the deadline when that was what ended it.
func ReadWithin(ctx context.Context, cli *etcd.Client, timeout time.Duration) (*View, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := Read(ctx, cli)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("cannot read the fleet within %s: %w", timeout, err)
	case err != nil:
		return nil, fmt.Errorf("cannot read the fleet: %w", err)
	}
	return v, nil
}

// ViewOf makes the view of the keys under hosts/.
func ViewOf(kvs []etcd.KeyValue) *View {
	v := &View{Hosts: []*HostView{}}
	hosts := map[string]*HostView{}
	var ports []etcd.KeyValue // read once every host record is
	warn := func(key []byte, err error) {
		v.Warnings = append(v.Warnings, fmt.Sprintf("ignoring fleet key %q: %v", key, err))
	}
	for _, kv := range kvs {
		id, port, err := ParseKey(string(kv.Key))
		var h Host
		switch {
		case err != nil:
		case port > 0:
			ports = append(ports, kv)
			continue
		case registry.Unmarshal(kv.Value, &h) != nil || h.ID == "":
			err = errors.New("its value is not a host record")
		case h.ID != id:
			err = fmt.Errorf("its value is the record of host %q", h.ID)
		case hosts[id] != nil:
			err = errors.New("the host has a record already")
		default:
			hosts[id] = &HostView{Host: h, Allocations: []*registry.Allocation{}}
			v.Hosts = append(v.Hosts, hosts[id])
		}
		if err != nil {
			warn(kv.Key, err)
		}
	}
	for _, kv := range ports {
		id, port, _ := ParseKey(string(kv.Key))
		a := new(registry.Allocation)
		switch {
		case hosts[id] == nil:
			warn(kv.Key, fmt.Errorf("host %s has no record", id))
		case registry.Unmarshal(kv.Value, a) != nil || a.Port != port:
			warn(kv.Key, fmt.Errorf("its value is not the allocation of port %d", port))
		default:
			hosts[id].Allocations = append(hosts[id].Allocations, a)
		}
	}
	v.count()
	return v
}

// count totals the view and puts hosts in id order, each's allocations in
// port order.
func (v *View) count() {
	for _, h := range v.Hosts {
		sort.Slice(h.Allocations, func(i, j int) bool { return h.Allocations[i].Port < h.Allocations[j].Port })
		for _, a := range h.Allocations {
			if h.Host.Range.Contains(a.Port) {
				h.Allocated++
			}
			switch a.HealthStatus {
			case registry.StatusActive, registry.StatusStarting, registry.StatusReserved:
			default:
				h.Unhealthy++
			}
		}
		h.Available = max(h.Host.Range.Size()-h.Allocated, 0)
		v.Allocated += h.Allocated
		v.Available += h.Available
		v.Unhealthy += h.Unhealthy
	}
	sort.Slice(v.Hosts, func(i, j int) bool { return v.Hosts[i].Host.ID < v.Hosts[j].Host.ID })
}

// ParseKey reads a key under hosts/: a host's record (port 0) or one of its
// allocations. Anything else is an error that says what is wrong with it.
func ParseKey(key string) (id string, port int, err error) {
	rest, ok := strings.CutPrefix(key, Prefix+"hosts/")
	if !ok {
		return "", 0, errors.New("not under " + Prefix + "hosts/")
	}
	id, tail, hasTail := strings.Cut(rest, "/")
	if err := ValidateHostID(id); err != nil {
		return "", 0, err
	}
	if !hasTail {
		return id, 0, nil
	}
	p, ok := strings.CutPrefix(tail, "ports/")
	if n, err := strconv.Atoi(p); ok && err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p {
		return id, n, nil
	}
	return "", 0, errors.New("want HOST-ID or HOST-ID/ports/PORT after hosts/")
}

// Where is one service's port on one host.
type Where struct {
	HostID     string               `json:"host_id"`
	Hostname   string               `json:"hostname"`
	Allocation *registry.Allocation `json:"allocation"`
}

// Services finds a service across the fleet, by host then port.
func (v *View) Services(name, portName string) []Where {
	var out []Where
	for _, h := range v.Hosts {
		for _, a := range h.Allocations {
			if a.ServiceName == name && (portName == "" || a.PortName == portName) {
				out = append(out, Where{HostID: h.Host.ID, Hostname: h.Host.Hostname, Allocation: a})
			}
		}
	}
	return out
}

// FindHost finds a host by its id, or else by its host name when no other
// host has that name.
func (v *View) FindHost(name string) (*HostView, error) {
	var named []*HostView
	for _, h := range v.Hosts {
		if h.Host.ID == name {
			return h, nil
		}
		if h.Host.Hostname == name {
			named = append(named, h)
		}
	}
	switch len(named) {
	case 0:
		return nil, fmt.Errorf("no host %q in the fleet", name)
	case 1:
		return named[0], nil
	}
	ids := make([]string, len(named))
	for i, h := range named {
		ids[i] = h.Host.ID
	}
	return nil, fmt.Errorf("%d hosts of the fleet are named %q: %s; name one by its host id", len(named), name, strings.Join(ids, ", "))
}
