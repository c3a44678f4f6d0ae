//go:build !linux

package probe

// FindByEnv needs /proc/PID/environ: off Linux nothing is found.
func FindByEnv(name, hash string) (Identity, bool) { return Identity{}, false }
