//go:build !linux

package probe

import "errors"

// Namespaces are a Linux matter: elsewhere none are recorded (0) and every
// PID is taken to be in the watchdog's own view.

// SelfNamespaces are unknown here.
func SelfNamespaces() (pidNS, netNS uint64) { return 0, 0 }

func namespacesOf(int) (pidNS, netNS uint64) { return 0, 0 }

// PIDNamespaceOf is 0 here; ok says whether pid is a process.
func PIDNamespaceOf(pid int) (ns uint64, ok bool) {
	_, err := Identify(pid)
	return 0, err == nil
}

func localPID(int, uint64) (int, bool, bool) { return 0, false, false }

// procIsOwn: there is no other view here.
func procIsOwn() bool { return true }

func innermostPID(int) (int, bool) { return 0, false }

func listeningInNetNS(int, int) (bool, error) {
	return false, errors.New("network namespaces are only looked into on Linux")
}

// SamePIDNamespace cannot be told here; false.
func SamePIDNamespace(int) bool { return false }

// SameNetNamespace cannot be told here; false.
func SameNetNamespace(int) bool { return false }
