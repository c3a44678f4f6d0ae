package watchdog

import (
	"fmt"
	"sort"
	"strings"
)

// An issue that lasts is one episode: counted and logged when it starts,
// logged again when it ends, not every cycle in between. episodes holds the
// issues open now, by allocation (port and allocation ID) or unmanaged
// listener (port and pid).
type episodes map[string]string

func issueKind(issue string) string {
	kind, _, _ := strings.Cut(issue, ":")
	return kind
}

// update records what rep found and returns the issues that started and
// the lines for those that ended. rep.NewIssues is set to the count of the
// started ones. A partial report (the check of an exited owner's ports) only
// opens issues; only a full cycle closes them.
func (e episodes) update(rep *Report, full bool) (started []string, ended []string) {
	now := map[string]string{}
	allocated := map[string]bool{} // the allocations the report saw, by key
	for _, r := range rep.Results {
		key := fmt.Sprintf("%d/%s", r.Port, r.probed.ID)
		allocated[key] = true
		if r.Issue == "" {
			continue
		}
		now[key] = issueKind(r.Issue)
		if e[key] != now[key] {
			started = append(started, r.IssueLine())
		}
	}
	for _, u := range rep.Unmanaged {
		key := fmt.Sprintf("%d/unmanaged/%d", u.Port, u.PID)
		now[key] = "unmanaged listener"
		if e[key] == "" {
			started = append(started, fmt.Sprintf("Port %d: %s", u.Port, u.Issue()))
		}
	}
	rep.NewIssues = len(started)
	if !full {
		for k, v := range now {
			e[k] = v
		}
		return started, nil
	}
	for key, kind := range e {
		port, rest, _ := strings.Cut(key, "/")
		if !strings.HasPrefix(rest, "unmanaged/") && !allocated[key] {
			// The allocation is gone: its release line said how the
			// issue ended, and a port no longer allocated has nothing
			// resolved.
			continue
		}
		if now[key] != kind { // gone, or another issue now
			ended = append(ended, fmt.Sprintf("Port %s: %s resolved", port, kind))
		}
	}
	sort.Strings(ended)
	clear(e)
	for k, v := range now {
		e[k] = v
	}
	return started, ended
}
