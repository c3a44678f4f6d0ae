//go:build !linux && !darwin

package probe

func peerCred(int) (Peer, error) { return Peer{}, ErrNoPeerCred }

// Inspect knows only the identity and name here; the user IDs are unknown
// (-1), so only root may claim a process.
func Inspect(pid int, _ bool) (ProcessInfo, error) {
	id, err := Identify(pid)
	if err != nil {
		return ProcessInfo{}, err
	}
	return ProcessInfo{ID: id, Name: ProcessName(pid), UID: -1, EUID: -1}, nil
}
