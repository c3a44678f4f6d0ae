package portinfo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// WaitSpec is what Wait waits for: Port, or every port of Service (which
// may not be allocated yet), to listen on loopback and, with Healthy, to
// answer its health path with a 2xx.
type WaitSpec struct {
	Store   *registry.Store
	Service string
	Port    int
	Healthy bool
	// Path is the health path; "" takes the allocation's.
	Path string
}

// Seen is what the last look found on one port.
type Seen struct {
	Port    int    `json:"port"`
	Service string `json:"service,omitzero"`
	// Listening: a TCP listener a connection to 127.0.0.1 or ::1 reaches
	// (on a loopback or wildcard address).
	Listening bool `json:"listening"`
	// Addresses are the addresses it listens on, loopback or not.
	Addresses  []string `json:"addresses"`
	HealthPath string   `json:"health_path,omitzero"`
	// Healthy is set with WaitSpec.Healthy alone (false until the
	// health path answers 2xx); nil, and absent from the JSON, otherwise.
	Healthy *bool `json:"healthy,omitzero"`
	// Health is the last health answer's fault ("HTTP 503", "connection
	// refused"); empty when it answered 2xx or was not asked.
	Health string `json:"health,omitzero"`
}

// WaitResult is what `gracectl wait --json` prints.
type WaitResult struct {
	Ready         bool    `json:"ready"`
	WaitedSeconds float64 `json:"waited_seconds"`
	Ports         []Seen  `json:"ports"`
	// LastSeen says, when not Ready, what the last look found.
	LastSeen string `json:"last_seen,omitzero"`
}

// Backoff bounds: the first listener checks follow each other quickly (a
// service that is about to listen is seen within moments), later ones
// slow down to MaxBackoff; a change of the registry (an allocation made or
// registered, a health status set) starts the fast checks again. The
// registry file is looked at (a stat) every RegistryEvery, as the
// watchdog does between its cycles.
const (
	MinBackoff    = 20 * time.Millisecond
	MaxBackoff    = time.Second
	RegistryEvery = 250 * time.Millisecond
)

// Wait waits until spec holds or ctx ends, and says what it last saw.
// A usage problem found on the way (--healthy without a health path) is
// an error.
func Wait(ctx context.Context, spec WaitSpec) (*WaitResult, error) {
	start := time.Now()
	res := &WaitResult{Ports: []Seen{}}
	backoff := MinBackoff
	stamp := ""
	var targets []Seen
	tick := time.NewTicker(RegistryEvery)
	defer tick.Stop()
	for {
		if st := registry.FileStamp(spec.Store.Path()); st != stamp {
			stamp, backoff = st, MinBackoff
			t, err := spec.targets(ctx)
			if err != nil {
				return nil, err
			}
			targets = t
		}
		res.Ports, res.Ready, res.LastSeen = look(ctx, spec, targets)
		res.WaitedSeconds = time.Since(start).Round(time.Millisecond).Seconds()
		if res.Ready {
			return res, nil
		}
		timer := time.NewTimer(backoff)
	sleep:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				res.WaitedSeconds = time.Since(start).Round(time.Millisecond).Seconds()
				return res, nil
			case <-timer.C:
				backoff = min(backoff*2, MaxBackoff)
				break sleep
			case <-tick.C:
				if registry.FileStamp(spec.Store.Path()) != stamp {
					timer.Stop()
					break sleep
				}
			}
		}
	}
}

// targets are the ports to wait for as the registry has them now, with
// their health paths.
func (spec WaitSpec) targets(ctx context.Context) ([]Seen, error) {
	r, err := spec.Store.Read(ctx)
	if err != nil {
		return nil, err
	}
	var out []Seen
	if spec.Service == "" {
		s := Seen{Port: spec.Port, HealthPath: spec.Path}
		if a := r.Get(spec.Port); a != nil {
			s.Service = a.Label()
			if s.HealthPath == "" {
				s.HealthPath = a.HealthPath
			}
		}
		out = append(out, s)
	} else {
		for _, a := range r.OfService(spec.Service, "") {
			s := Seen{Port: a.Port, Service: a.Label(), HealthPath: spec.Path}
			if s.HealthPath == "" {
				s.HealthPath = a.HealthPath
			}
			out = append(out, s)
		}
	}
	if spec.Healthy {
		for _, s := range out {
			if s.HealthPath == "" {
				return nil, &NoHealthPathError{Port: s.Port}
			}
		}
	}
	return out, nil
}

// NoHealthPathError: --healthy for a port with no health path to ask.
type NoHealthPathError struct{ Port int }

func (e *NoHealthPathError) Error() string {
	return fmt.Sprintf("port %d has no health path to ask: give --path, or allocate it with --health-path", e.Port)
}

// look checks each target once: is it listening on loopback, and healthy
// if asked.
func look(ctx context.Context, spec WaitSpec, targets []Seen) (seen []Seen, ready bool, last string) {
	if len(targets) == 0 {
		return []Seen{}, false, fmt.Sprintf("service %s holds no port yet", registry.Quote(spec.Service))
	}
	ready = true
	var notes []string
	for _, s := range targets {
		s.Addresses, s.Listening = listeningOn(ctx, s.Port)
		healthy := false
		if s.Listening && spec.Healthy {
			h := probe.CheckHealth(ctx, s.Port, s.HealthPath, probe.DefaultHealthTimeout)
			healthy, s.Health = h.OK, h.Err
		}
		if spec.Healthy {
			s.Healthy = &healthy
		}
		switch {
		case !s.Listening && len(s.Addresses) > 0:
			notes = append(notes, fmt.Sprintf("port %d listens on %s only, not on 127.0.0.1 or ::1", s.Port, strings.Join(s.Addresses, ", ")))
		case !s.Listening:
			notes = append(notes, fmt.Sprintf("nothing listens on port %d", s.Port))
		case spec.Healthy && !healthy:
			notes = append(notes, fmt.Sprintf("port %d listens, but %s answers %s", s.Port, s.HealthPath, orUnknown(s.Health)))
		}
		ready = ready && s.Listening && (!spec.Healthy || healthy)
		seen = append(seen, s)
	}
	return seen, ready, strings.Join(notes, "; ")
}

func orUnknown(s string) string {
	if s == "" {
		return "no 2xx"
	}
	return s
}

// listeningOn lists the addresses port listens on and whether a
// connection to 127.0.0.1 or ::1 reaches one of them, from the socket
// table; where that cannot be read, by connecting to both.
func listeningOn(ctx context.Context, port int) (addrs []string, loopback bool) {
	ls, err := probe.ListenersOn(port)
	if err != nil {
		return nil, probe.DialListening(ctx, port, probe.DialTimeout)
	}
	addrs = []string{}
	for _, s := range ls {
		addrs = append(addrs, addrText(s.Local))
		loopback = loopback || s.Loopback()
	}
	return addrs, loopback
}
