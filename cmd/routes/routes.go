// Package routes keeps a reverse proxy's routes in step with the registry
// for `gracectl watch --routes`: one host name per allocation
// (SERVICE.DOMAIN, PORTNAME.SERVICE.DOMAIN) to 127.0.0.1:PORT, present only
// while the service can answer. Plan decides the table from a registry
// snapshot (a pure function); a Proxy makes a proxy hold exactly that table
// in objects of gracectl's own — Caddy through its admin API (caddy.go),
// nginx through an include file (nginx.go) — and touches nothing else; the
// Publisher runs Plan and the Proxy whenever the watchdog says the registry
// or a service's health changed, and at every cycle.
package routes

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// Defaults of the watch flags.
const (
	DefaultDomain = "localhost"
	DefaultListen = ":80"
)

// Config is what every route shares: the proxy (the --routes value), the
// domain and the address the proxy serves the names on (HOST:PORT, HOST
// empty for every address). The watchdog's state file records it.
type Config = watchdog.Routes

// States of a route.
const (
	StateRouted = "routed" // the proxy sends its requests to the port
	StateDown   = "down"   // the proxy answers 503
)

// Route is one host name and where it leads.
type Route struct {
	Host         string `json:"host"`
	URL          string `json:"url"`
	Service      string `json:"service_name"`
	PortName     string `json:"port_name,omitzero"`
	Port         int    `json:"port"`
	HealthStatus string `json:"health_status"`
	// State is routed or down; Reason says why a route is down.
	State  string `json:"state"`
	Reason string `json:"reason,omitzero"`
}

// Skipped is an allocation that gets no host name, and why.
type Skipped struct {
	Service  string `json:"service_name"`
	PortName string `json:"port_name,omitzero"`
	Port     int    `json:"port"`
	Reason   string `json:"reason"`
}

// Table is what `gracectl routes --json` prints and GET /api/routes
// returns: the routes of the registry as it is now.
type Table struct {
	Config
	Routes  []Route   `json:"routes"`
	Skipped []Skipped `json:"skipped"`
}

// Routed are the routes the proxy sends on to their port.
func (t *Table) Routed() []Route {
	var out []Route
	for _, r := range t.Routes {
		if r.State == StateRouted {
			out = append(out, r)
		}
	}
	return out
}

// URLOf is the URL of the allocation of port, "" when it has none: its own
// name's (PORTNAME.SERVICE.DOMAIN for a named port, not the service's
// SERVICE.DOMAIN it may also answer on).
func (t *Table) URLOf(port int) string {
	url, labels := "", 0
	for _, r := range t.Routes {
		if n := strings.Count(r.Host, "."); r.Port == port && n > labels {
			url, labels = r.URL, n
		}
	}
	return url
}

// Plan decides the routes of r. An allocation's host name is its service's
// DNS label under the domain (registry.DNSLabel), with its port's name
// first for a named port; a service whose ports are all named answers on
// SERVICE.DOMAIN too, with its lowest port. Two allocations that would
// share a name: the lower port has it, the other is skipped. A route is
// routed only while its service is active and its last health check
// passed; any other allocation (reserved, starting, unhealthy, not
// listening, dead, orphaned, or a health check that just failed) keeps
// its name, answered 503 by the proxy.
func Plan(r *registry.Registry, c Config) *Table {
	t := &Table{Config: c, Routes: []Route{}, Skipped: []Skipped{}}
	taken := map[string]int{} // host → port
	services := map[string][]*registry.Allocation{}
	var order []string
	add := func(a *registry.Allocation, host string) {
		if p, ok := taken[host]; ok {
			t.Skipped = append(t.Skipped, Skipped{Service: a.ServiceName, PortName: a.PortName, Port: a.Port,
				Reason: "its host name " + host + " is port " + strconv.Itoa(p) + "'s"})
			return
		}
		taken[host] = a.Port
		rt := Route{Host: host, URL: URL(host, c.Listen), Service: a.ServiceName, PortName: a.PortName, Port: a.Port,
			HealthStatus: a.HealthStatus, State: StateRouted}
		switch {
		case a.HealthStatus != registry.StatusActive:
			rt.State, rt.Reason = StateDown, a.HealthStatus
		case a.HealthFailures > 0:
			rt.State, rt.Reason = StateDown, "health check failing"
		}
		t.Routes = append(t.Routes, rt)
	}
	for _, a := range r.Sorted() {
		svc, ok := registry.DNSLabel(a.ServiceName)
		if !ok {
			t.Skipped = append(t.Skipped, Skipped{Service: a.ServiceName, PortName: a.PortName, Port: a.Port,
				Reason: "the service name has no DNS label (letters or digits, 63 at most)"})
			continue
		}
		if a.PortName == "" {
			add(a, svc+"."+c.Domain)
			continue
		}
		pn, ok := registry.DNSLabel(a.PortName)
		if !ok {
			t.Skipped = append(t.Skipped, Skipped{Service: a.ServiceName, PortName: a.PortName, Port: a.Port,
				Reason: "the port name has no DNS label (letters or digits, 63 at most)"})
			continue
		}
		if _, seen := services[svc]; !seen {
			order = append(order, svc)
		}
		services[svc] = append(services[svc], a)
		add(a, pn+"."+svc+"."+c.Domain)
	}
	for _, svc := range order {
		host := svc + "." + c.Domain
		if _, ok := taken[host]; !ok {
			add(services[svc][0], host)
		}
	}
	slices.SortStableFunc(t.Routes, func(a, b Route) int { return strings.Compare(a.Host, b.Host) })
	return t
}

// URL is the address of host through a proxy serving on listen: no port
// for 80.
func URL(host, listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "80" {
		return "http://" + host
	}
	return "http://" + host + ":" + port
}

// ParseListen reads --routes-listen: PORT, :PORT or HOST:PORT, as
// HOST:PORT (HOST empty for every address).
func ParseListen(s string) (string, bool) {
	if _, err := strconv.Atoi(s); err == nil {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", false
	}
	return net.JoinHostPort(host, port), true
}
