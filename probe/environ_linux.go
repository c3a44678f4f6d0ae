package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strconv"
)

// FindByEnv finds the running process whose environment, as it was at
// exec (/proc/PID/environ), has name set to a value whose SHA-256 is
// hash (hex); of several, the one that started first. Only processes this
// user may look at are seen (its own, or all for root).
func FindByEnv(name, hash string) (Identity, bool) {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return Identity{}, false
	}
	prefix := []byte(name + "=")
	var best Identity
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, prefix) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			value, ok := bytes.CutPrefix(kv, prefix)
			if !ok {
				continue
			}
			sum := sha256.Sum256(value)
			if hex.EncodeToString(sum[:]) != hash {
				continue
			}
			if id, err := IdentifyLocal(pid); err == nil && (best.PID == 0 || id.Start < best.Start) {
				best = id
			}
			break
		}
	}
	return best, best.PID != 0
}

// Getenv is the value of name in process pid's environment as it was at
// exec (/proc/PID/environ): only a process this user may look at (its own,
// or any for root).
func Getenv(pid int, name string) (string, bool) {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return "", false
	}
	prefix := []byte(name + "=")
	for _, kv := range bytes.Split(env, []byte{0}) {
		if value, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(value), true
		}
	}
	return "", false
}
