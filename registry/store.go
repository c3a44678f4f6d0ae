package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// Paths under the state root, as the seed names them.
const (
	RegistryDir  = "databases/port_registry"
	RegistryFile = "port_registry.json"
	LogDir       = "logs/port_manager"
)

// DefaultLockTimeout bounds the wait for the registry lock.
const DefaultLockTimeout = 10 * time.Second

// Store is the registry under one state root.
type Store struct {
	Root        string
	LockTimeout time.Duration
}

// Open returns the store under root (not touching the disk).
func Open(root string, lockTimeout time.Duration) *Store {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	return &Store{Root: root, LockTimeout: lockTimeout}
}

// Dir is the folder of the registry file.
func (s *Store) Dir() string { return filepath.Join(s.Root, RegistryDir) }

// Path is the registry file.
func (s *Store) Path() string { return filepath.Join(s.Dir(), RegistryFile) }

// LockPath is the lock file beside the registry. It is never renamed or
// deleted, so every process locks the same inode.
func (s *Store) LockPath() string { return s.Path() + ".lock" }

// LogDir is the folder of the daily audit logs.
func (s *Store) LogDir() string { return filepath.Join(s.Root, LogDir) }

// LockError is returned when the lock could not be taken in time.
type LockError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for the registry lock %s (another gracectl holds it)", e.Timeout, e.Path)
}

// CorruptError is returned when the registry file cannot be parsed. The
// file is left as it was.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("registry %s is not valid: %v; it was left untouched (fix or move it aside)", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// lock takes the registry lock, shared or exclusive, waiting at most
// s.LockTimeout. flock is taken by a blocking call in a goroutine, so a
// waiter is woken the moment the holder unlocks instead of polling; if the
// wait times out, the goroutine releases the lock as soon as it gets it.
func (s *Store) lock(ctx context.Context, exclusive bool) (*flock.Flock, error) {
	if exclusive {
		if err := os.MkdirAll(s.Dir(), 0o755); err != nil {
			return nil, fmt.Errorf("cannot create registry folder: %w", err)
		}
	}
	fl := flock.New(s.LockPath(), flock.SetPermissions(0o644))
	// Fast path: no contention.
	var ok bool
	var err error
	if exclusive {
		ok, err = fl.TryLock()
	} else {
		ok, err = fl.TryRLock()
	}
	if err != nil {
		return nil, lockOpenErr(s.LockPath(), err)
	}
	if ok {
		return fl, nil
	}
	done := make(chan error, 1)
	go func() {
		if exclusive {
			done <- fl.Lock()
		} else {
			done <- fl.RLock()
		}
	}()
	timer := time.NewTimer(s.LockTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return nil, lockOpenErr(s.LockPath(), err)
		}
		return fl, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	go func() {
		if <-done == nil {
			fl.Close()
		}
	}()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, &LockError{Path: s.LockPath(), Timeout: s.LockTimeout}
}

func lockOpenErr(path string, err error) error {
	return fmt.Errorf("cannot lock %s: %w", path, err)
}

// read loads the registry file; a missing file is an empty registry.
func (s *Store) read() (*Registry, fs.FileInfo, error) {
	f, err := os.Open(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return &Registry{Allocations: Allocations{}}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read registry: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read registry: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read registry: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, nil, &CorruptError{Path: s.Path(), Err: err}
	}
	return r, info, nil
}

// Read returns the registry under a shared lock.
func (s *Store) Read(ctx context.Context) (*Registry, error) {
	if _, err := os.Stat(s.LockPath()); errors.Is(err, fs.ErrNotExist) {
		// Nothing was ever written here: do not create folders to read.
		if _, err := os.Stat(s.Path()); errors.Is(err, fs.ErrNotExist) {
			return &Registry{Allocations: Allocations{}}, nil
		}
	}
	fl, err := s.lock(ctx, false)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// A read-only user may still read an unlocked snapshot; the
			// atomic rename means it is never a torn file.
			r, _, rerr := s.read()
			return r, rerr
		}
		return nil, err
	}
	defer fl.Close()
	r, _, err := s.read()
	return r, err
}

// Tx is one change to the registry in progress. Log lines added to it are
// appended to the audit log after the registry is written, under the same
// lock.
type Tx struct {
	events []any
	now    Time
}

// Now is the time of this change, the same for every record it touches.
func (tx *Tx) Now() Time { return tx.now }

// Log queues an audit log event.
func (tx *Tx) Log(ev any) { tx.events = append(tx.events, ev) }

// ErrNoChange may be returned by an Update function to leave the registry
// file as it is (nothing is written, no error is returned to the caller).
var ErrNoChange = errors.New("no change")

// Update locks the registry exclusively, reads it, calls fn and, if fn
// succeeds, writes the result atomically and appends fn's log events, both
// before unlocking; it returns once the folder and the log are fsynced
// (after unlocking, so other writers need not wait for those). If fn fails
// nothing is written.
func (s *Store) Update(ctx context.Context, fn func(r *Registry, tx *Tx) error) (err error) {
	fl, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	unlocked := false
	defer func() {
		if !unlocked {
			fl.Close()
		}
	}()
	r, info, err := s.read()
	if err != nil {
		return err
	}
	s.removeStaleTemps()
	tx := &Tx{now: Now()}
	if err := fn(r, tx); err != nil {
		if errors.Is(err, ErrNoChange) {
			return nil
		}
		return err
	}
	r.LastUpdated = tx.now
	perm := fs.FileMode(0o644)
	if info != nil {
		perm = info.Mode().Perm()
	}
	if err := writeFileAtomicFunc(s.Path(), r.Encode, perm, info, false); err != nil {
		return fmt.Errorf("cannot write registry %s: %w", s.Path(), err)
	}
	var log *pendingLog
	if len(tx.events) > 0 {
		if log, err = appendLog(s.LogDir(), tx.now.Time, tx.events); err != nil {
			return fmt.Errorf("registry updated, but the audit log could not be written: %w", err)
		}
	}
	// Everything another gracectl reads is in place: the registry file is
	// written, synced and renamed, the log lines are appended. Waiting for
	// the folder and the log to reach the disk need not hold the others up;
	// this call still returns only after both have.
	fl.Close()
	unlocked = true
	if err := syncDir(s.Dir()); err != nil {
		return fmt.Errorf("cannot write registry %s: %w", s.Path(), err)
	}
	if err := log.sync(); err != nil {
		return fmt.Errorf("registry updated, but the audit log could not be written: %w", err)
	}
	return nil
}

// removeStaleTemps deletes temp files left by writers that died between
// creating and renaming them (SIGKILL, power loss). Temp files are only
// made under the exclusive lock, which the caller holds, so any that exist
// now belong to a dead writer.
func (s *Store) removeStaleTemps() {
	matches, _ := filepath.Glob(filepath.Join(s.Dir(), "."+RegistryFile+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}
