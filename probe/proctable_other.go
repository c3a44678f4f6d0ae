//go:build !linux

package probe

import ps "github.com/mitchellh/go-ps"

// readProcessTable fills t from go-ps: names and parents, no start times
// (ProcessTable.Resolve then asks the system per PID).
func readProcessTable(t *ProcessTable) {
	procs, err := ps.Processes()
	if err != nil {
		return
	}
	for _, p := range procs {
		t.parent[p.Pid()] = p.PPid()
		t.name[p.Pid()] = p.Executable()
	}
}
