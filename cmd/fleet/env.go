package fleet

import (
	"cmp"
	"fmt"
	"sort"
	"strings"

	"github.com/gracectl/gracectl/registry"
)

// SeveralHostsError is `env --fleet` asked for a service that runs on
// more than one host, without --host: which host it should name is not
// the fleet's to guess.
type SeveralHostsError struct {
	Services map[string][]string // service → the ids of the hosts it runs on
}

func (e *SeveralHostsError) Error() string {
	names := make([]string, 0, len(e.Services))
	for s := range e.Services {
		names = append(names, s)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, s := range names {
		parts[i] = fmt.Sprintf("%q on %s", s, strings.Join(e.Services[s], ", "))
	}
	return "services run on several hosts of the fleet: " + strings.Join(parts, "; ") + "; pick one with --host"
}

// Env is SERVICE_HOST (the host's name), SERVICE_HOST_ID and SERVICE_PORT
// for each service named (every one, when none is), across the fleet or
// on the one host that host names (an id, or a host name no other host
// has). A service that holds several ports under one name on a host gets
// its lowest. A service named that holds no port, or one on several hosts
// when host is "", is an error.
func (v *View) Env(services []string, host string) (map[string]any, error) {
	hosts := v.Hosts
	if host != "" {
		h, err := v.FindHost(host)
		if err != nil {
			return nil, err
		}
		hosts = []*HostView{h}
	}
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	vars := map[string]any{}
	on := map[string][]string{} // service → its hosts
	for _, h := range hosts {
		for _, a := range h.Allocations { // by port: the lowest wins
			if len(want) > 0 && !want[a.ServiceName] {
				continue
			}
			if ids := on[a.ServiceName]; len(ids) == 0 || ids[len(ids)-1] != h.Host.ID {
				on[a.ServiceName] = append(ids, h.Host.ID)
			}
			base := strings.TrimSuffix(registry.EnvName(a.ServiceName, a.PortName), "_PORT")
			if _, seen := vars[base+"_PORT"]; !seen {
				vars[base+"_HOST"], vars[base+"_HOST_ID"], vars[base+"_PORT"] = cmp.Or(h.Host.Hostname, h.Host.ID), h.Host.ID, a.Port
			}
		}
	}
	for _, s := range services {
		if len(on[s]) == 0 {
			return nil, fmt.Errorf("service %q holds no port on %s", s, cmp.Or(host, "any host of the fleet"))
		}
	}
	several := &SeveralHostsError{Services: map[string][]string{}}
	for s, ids := range on {
		if len(ids) > 1 {
			several.Services[s] = ids
		}
	}
	if len(several.Services) > 0 {
		return nil, several
	}
	return vars, nil
}
