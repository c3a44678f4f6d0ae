package routes

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry"
)

// TestPlan: the rules of docs/routes.md, row by row.
func TestPlan(t *testing.T) {
	r := &registry.Registry{Allocations: map[string]*registry.Allocation{}}
	add := func(port int, service, portName, status string, failures int) {
		r.Allocations[strconv.Itoa(port)] = &registry.Allocation{Port: port, ServiceName: service, PortName: portName,
			HealthStatus: status, HealthFailures: failures}
	}
	add(8000, "grace_backend", "", registry.StatusActive, 0)
	add(8001, "grace-backend", "", registry.StatusActive, 0) // the same name: the lower port has it
	add(8002, "api", "http", registry.StatusActive, 0)
	add(8003, "api", "admin", registry.StatusActive, 0)
	add(8004, "flaky", "", registry.StatusActive, 1)
	add(8005, "sick", "", registry.StatusUnhealthy, 3)
	add(8006, "booking", "", registry.StatusStarting, 0)
	add(8007, "held", "", registry.StatusReserved, 0)
	add(8008, "☃", "", registry.StatusActive, 0)
	add(8009, "Café", "", registry.StatusDead, 0)
	add(8010, "web", "☃", registry.StatusActive, 0)
	tab := Plan(r, Config{Domain: "localhost", Listen: ":8080"})
	got := map[string]string{}
	for _, rt := range tab.Routes {
		got[rt.Host] = strconv.Itoa(rt.Port) + " " + rt.State + " " + rt.Reason
	}
	want := map[string]string{
		"grace-backend.localhost": "8000 routed ",
		"http.api.localhost":      "8002 routed ",
		"admin.api.localhost":     "8003 routed ",
		"api.localhost":           "8002 routed ", // all its ports named: its lowest
		"flaky.localhost":         "8004 down health check failing",
		"sick.localhost":          "8005 down unhealthy",
		"booking.localhost":       "8006 down starting",
		"held.localhost":          "8007 down reserved",
		"cafe.localhost":          "8009 down dead",
	}
	for h, w := range want {
		if got[h] != w {
			t.Errorf("%s: %q, want %q", h, got[h], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	skipped := map[int]string{}
	for _, s := range tab.Skipped {
		skipped[s.Port] = s.Reason
	}
	if !strings.Contains(skipped[8001], "grace-backend.localhost is port 8000's") || !strings.Contains(skipped[8008], "service name") ||
		!strings.Contains(skipped[8010], "port name") || len(skipped) != 3 {
		t.Errorf("skipped: %v", skipped)
	}
	if u := tab.URLOf(8000); u != "http://grace-backend.localhost:8080" {
		t.Errorf("URL %q", u)
	}
	if u := tab.URLOf(8002); u != "http://http.api.localhost:8080" {
		t.Errorf("URL of a named port %q", u)
	}
	if u := URL("a.localhost", ":80"); u != "http://a.localhost" {
		t.Errorf("URL on port 80: %q", u)
	}
}

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{"80": ":80", ":8080": ":8080", "127.0.0.1:80": "127.0.0.1:80", "[::1]:80": "[::1]:80", "0": "", "x": "", ":99999": ""} {
		got, ok := ParseListen(in)
		if got != want || ok != (want != "") {
			t.Errorf("ParseListen(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
