// Package fleet publishes a host's registry to etcd and reads the fleet
// from it (`watch --fleet`, `status --fleet`, …). The file registry stays
// the truth for each host's ports: etcd holds a copy for people and tools
// that look across hosts, and never decides a port. docs/fleet.md has the
// key layout and the failure table.
package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/registry"
)

// Prefix is where everything lives.
const Prefix = "/gracectl/v1/"

// HostKey is a host's record; its ports are under HostKey(id)+"/ports/".
func HostKey(id string) string { return Prefix + "hosts/" + id }

// PortKey is one allocation of a host.
func PortKey(id string, port int) string { return HostKey(id) + "/ports/" + strconv.Itoa(port) }

func claimKey(id string) string { return Prefix + "claims/" + id }

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
		if _, _, err := splitHostPort(e); err != nil {
			return nil, fmt.Errorf("fleet endpoint %q: want HOST:PORT", e)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("no etcd endpoint given: want etcd://HOST:PORT[,HOST:PORT...]")
	}
	return out, nil
}

func splitHostPort(e string) (string, int, error) {
	i := strings.LastIndexByte(e, ':')
	if i <= 0 {
		return "", 0, errors.New("no port")
	}
	p, err := strconv.Atoi(e[i+1:])
	if err != nil || p < 1 || p > 65535 {
		return "", 0, errors.New("bad port")
	}
	return e[:i], p, nil
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
}

// Read reads the whole fleet in one range read.
func Read(ctx context.Context, cli *etcd.Client) (*View, error) {
	resp, err := cli.Prefix(ctx, Prefix+"hosts/", false)
	if err != nil {
		return nil, fmt.Errorf("cannot read the fleet from etcd: %w", err)
	}
	hosts := map[string]*HostView{}
	get := func(id string) *HostView {
		if hosts[id] == nil {
			hosts[id] = &HostView{Host: Host{ID: id}, Allocations: []*registry.Allocation{}}
		}
		return hosts[id]
	}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), Prefix+"hosts/")
		id, port, isPort := strings.Cut(rest, "/ports/")
		if isPort {
			a := new(registry.Allocation)
			if err := registry.Unmarshal(kv.Value, a); err != nil || strconv.Itoa(a.Port) != port {
				continue // not ours to judge: skip what does not parse
			}
			get(id).Allocations = append(get(id).Allocations, a)
			continue
		}
		var h Host
		if err := registry.Unmarshal(kv.Value, &h); err == nil {
			get(id).Host = h
		}
	}
	v := &View{Hosts: []*HostView{}}
	for _, h := range hosts {
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
		v.Hosts = append(v.Hosts, h)
		v.Allocated += h.Allocated
		v.Available += h.Available
		v.Unhealthy += h.Unhealthy
	}
	sort.Slice(v.Hosts, func(i, j int) bool { return v.Hosts[i].Host.ID < v.Hosts[j].Host.ID })
	return v, nil
}

// Where is one service's port on one host.
type Where struct {
	Host       string               `json:"host"` // the host's name
	HostID     string               `json:"host_id"`
	Allocation *registry.Allocation `json:"allocation"`
}

// Services finds a service across the fleet, by host then port.
func (v *View) Services(name, portName string) []Where {
	var out []Where
	for _, h := range v.Hosts {
		for _, a := range h.Allocations {
			if a.ServiceName == name && (portName == "" || a.PortName == portName) {
				out = append(out, Where{Host: h.Host.Hostname, HostID: h.Host.ID, Allocation: a})
			}
		}
	}
	return out
}

// FindHost finds a host by id or host name.
func (v *View) FindHost(name string) *HostView {
	for _, h := range v.Hosts {
		if h.Host.ID == name || h.Host.Hostname == name {
			return h
		}
	}
	return nil
}

// HostID is --host-id, else /etc/machine-id, else the host name.
func HostID(flag string) string {
	if flag != "" {
		return flag
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	h, _ := os.Hostname()
	return h
}
