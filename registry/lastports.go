package registry

import (
	"slices"
	"strings"
)

// Stable ports: the registry remembers, per service (and port name), the
// port it held last, so a service that comes back gets the same port
// (Allocate) and other services keep off it while other ports are free.

// LastPort is a remembered port.
type LastPort struct {
	Port int  `json:"port"`
	At   Time `json:"at"` // when it was last allocated or released
}

// MaxLastPorts bounds the memory: the oldest entries go first.
const MaxLastPorts = 4096

func lastPortKey(service, portName string) string {
	if portName == "" {
		return service
	}
	return service + "/" + portName
}

// keyOf says whether key (lastPortKey's) is one of service's, under any
// port name.
func keyOf(key, service string) bool {
	return key == service || strings.HasPrefix(key, service+"/")
}

// PortserverStartedBy is the started_by of the portserver's allocations:
// test suites' throw-away ports, never remembered.
const PortserverStartedBy = "portserver"

// remember records a's port as its service's last.
func (r *Registry) remember(a *Allocation, now Time) {
	if a.StartedBy == PortserverStartedBy {
		return
	}
	if r.LastPorts == nil {
		r.LastPorts = map[string]LastPort{}
	}
	r.LastPorts[lastPortKey(a.ServiceName, a.PortName)] = LastPort{Port: a.Port, At: now}
	if len(r.LastPorts) <= MaxLastPorts {
		return
	}
	keys := make([]string, 0, len(r.LastPorts))
	for k := range r.LastPorts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return r.LastPorts[x].At.Compare(r.LastPorts[y].At.Time) })
	for _, k := range keys[:len(keys)-MaxLastPorts] {
		delete(r.LastPorts, k)
	}
}

// rememberedForOthers are the ports remembered for services other than
// service.
func (r *Registry) rememberedForOthers(service string) map[int]bool {
	out := map[int]bool{}
	for k, lp := range r.LastPorts {
		if !keyOf(k, service) {
			out[lp.Port] = true
		}
	}
	return out
}

// Forget drops the ports remembered for service (all its port names); it
// reports how many there were.
func (r *Registry) Forget(service string) int {
	n := 0
	for k := range r.LastPorts {
		if keyOf(k, service) {
			delete(r.LastPorts, k)
			n++
		}
	}
	return n
}

// heldBefore says whether the registry remembers service (under any port
// name) holding port last.
func (r *Registry) heldBefore(service string, port int) bool {
	for k, lp := range r.LastPorts {
		if lp.Port == port && keyOf(k, service) {
			return true
		}
	}
	return false
}
