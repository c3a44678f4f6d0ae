package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
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
	// Notice, if set, receives one-line messages for the user: a registry
	// file created, and where.
	Notice LogFunc
	// Elsewhere are the state roots of other registries of this host whose
	// ports this one never hands out (HeldElsewhere): the host registry,
	// for a private or project registry.
	Elsewhere []string
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

// RunDir is the folder of the state root's sockets (the portserver's).
const RunDir = "run"

// EnsureRunDir makes the run folder if needed (0755, never through a link)
// and returns it, once CheckPrivateDir holds for it and the state root: a
// socket there cannot have been put in place by another user.
func (s *Store) EnsureRunDir() (string, error) {
	if err := ensureDir(s.Root, RunDir, 0o755); err != nil {
		return "", err
	}
	dir := filepath.Join(s.Root, RunDir)
	for _, d := range []string{s.Root, dir} {
		if err := CheckPrivateDir(d); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// CheckPrivateDir checks that only dir's owner, who is this user or root,
// and its group can create, rename or remove entries in it: a real folder
// (not a link), owned by this user or root, not writable by every user.
// Another user can then never put a file or socket where gracectl expects
// its own.
func CheckPrivateDir(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if err := dirOnly(dir, info); err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to another user (uid %d), who could put a socket there before gracectl does", dir, st.Uid)
	}
	if info.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is writable by every user, so another user could put a socket there before gracectl does", dir)
	}
	return nil
}

// Shared reports whether the registry is shared by a group (`gracectl init
// --group`): its folder has the setgid bit.
func (s *Store) Shared() bool {
	info, err := os.Lstat(s.Dir())
	return err == nil && info.Mode()&fs.ModeSetgid != 0
}

// modes are the permissions of the files gracectl creates here: readable by
// all and writable by the owner (and the group of a shared registry); lock
// files readable by the owner and that group only, so nobody else can hold
// a lock.
func (s *Store) modes() (file, lock fs.FileMode) {
	if s.Shared() {
		return 0o664, 0o660
	}
	return 0o644, 0o600
}

// FileMode is the mode of files gracectl creates in this registry.
func (s *Store) FileMode() fs.FileMode {
	f, _ := s.modes()
	return f
}

// EnsureDir creates the registry folder if needed, never through a link.
func (s *Store) EnsureDir() error { return ensureDir(s.Root, RegistryDir, 0o755) }

func ownedBySelf(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
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

// read loads the registry file; a missing file is an empty registry. If
// the file holds exactly the bytes prev was parsed from, prev is returned
// instead of a new parse (a read and a comparison cost a tenth of one).
func (s *Store) read(prev *Registry) (*Registry, fs.FileInfo, error) {
	if err := checkDirs(s.Root, RegistryDir); err != nil {
		return nil, nil, fmt.Errorf("cannot read registry: %w", err)
	}
	var was []byte
	if prev != nil {
		was = prev.src
	}
	data, same, info, err := readFileUnlessSame(s.Path(), was)
	if errors.Is(err, fs.ErrNotExist) {
		return &Registry{Allocations: Allocations{}}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read registry: %w", err)
	}
	if same {
		return prev, info, nil
	}
	r, err := Parse(data)
	if err != nil {
		return nil, nil, &CorruptError{Path: s.Path(), Err: err}
	}
	r.src = data
	return r, info, nil
}

// Read returns the registry as it is now, without locking: the file is
// only ever replaced whole by a rename, so this is a consistent snapshot,
// and no reader can hold up a writer.
func (s *Store) Read(ctx context.Context) (*Registry, error) {
	r, _, err := s.read(nil)
	return r, err
}

// Tx is one change to the registry in progress. Audit events logged in it
// are numbered, written into the registry file as its pending audit lines,
// and appended to the audit log after the registry is written, under the
// same lock (audit.go says how a crash between the two is repaired).
type Tx struct {
	now     Time
	seq     uint64   // the last sequence number used
	lines   []string // encoded events, each with its sequence number
	err     error
	derived bool
}

// Derived marks the change as one of derived state only — health
// statuses and counts, which the next watchdog cycle finds again: unless it
// logs an audit line, it is renamed into place without an fsync, as the
// portserver's changes are (docs/file-formats.md). A release still is.
func (tx *Tx) Derived() { tx.derived = true }

// Now is the time of this change, the same for every record it touches.
func (tx *Tx) Now() Time { return tx.now }

// Log queues an audit event, numbering it.
func (tx *Tx) Log(ev Event) {
	tx.seq++
	ev.setSeq(tx.seq)
	b, err := MarshalLine(ev)
	if err != nil && tx.err == nil {
		tx.err = err
	}
	tx.lines = append(tx.lines, string(b))
}

// ErrNoChange may be returned by an Update function to leave the registry
// file as it is (nothing is written, no error is returned to the caller).
var ErrNoChange = errors.New("no change")

// Update locks the registry exclusively, reads it, calls fn and, if fn
// succeeds, writes the result atomically and appends fn's audit lines, both
// before unlocking; it returns once the folder and the log are fsynced
// (after unlocking, so other writers need not wait for those). If fn fails
// nothing is written. Audit lines an earlier writer left pending (it died
// between its rename and its append) are appended first, in any case.
func (s *Store) Update(ctx context.Context, fn func(r *Registry, tx *Tx) error) (err error) {
	return s.update(ctx, fn, writeOpts{durable: true})
}

// UpdateFrom is Update for a caller that read prev with Read moments ago
// (the watchdog cycle): if the file under the lock is still byte for byte
// what prev was read from, fn gets prev instead of a second parse of the
// same bytes. prev is fn's to change; the caller must not use it after.
func (s *Store) UpdateFrom(ctx context.Context, prev *Registry, fn func(r *Registry, tx *Tx) error) error {
	return s.update(ctx, fn, writeOpts{durable: true, prev: prev})
}

// writeOpts tune update.
type writeOpts struct {
	// durable false fsyncs nothing: the change is visible to every reader
	// at once (rename), and reaches the disk with the kernel's writeback or
	// the next durable change, whichever comes first. The portserver's
	// allocations are made so (docs/file-formats.md).
	durable bool
	// written, if set, is called with the registry as it now is on disk
	// (written, or left as read when fn changed nothing), still under the
	// lock.
	written func(r *Registry)
	// prev, if set, is a registry the caller read (UpdateFrom).
	prev *Registry
	// held, if set, is the lock to take (the portserver's pool).
	held *HeldLock
	// keep: the registry handed to written remembers the bytes written,
	// so that passed as prev to the next change it spares that change a
	// parse if nobody else wrote meanwhile.
	keep bool
}

// update is Update with opts: under the lock, read, append what an
// interrupted change left, apply fn, write the registry, append its audit
// lines; unlocked, wait for the folder and the log to reach the disk.
func (s *Store) update(ctx context.Context, fn func(r *Registry, tx *Tx) error, opts writeOpts) (err error) {
	unlock, err := s.acquire(ctx, opts.held)
	if err != nil {
		return err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	c := &change{s: s, durable: opts.durable, keep: opts.keep}
	defer c.syncLogs(&err)
	r, info, err := s.read(opts.prev)
	if err != nil {
		return err
	}
	r.src = nil // fn changes r: it no longer stands for those bytes
	s.removeStaleTemps()
	c.filePerm, _ = s.modes()
	repaired, err := flushPending(s.Root, r.PendingAudit, c.filePerm)
	c.logs = append(c.logs, repaired...)
	if err != nil {
		return fmt.Errorf("cannot append the audit lines an interrupted change left: %w", err)
	}
	tx := &Tx{now: Now(), seq: r.AuditSeq}
	if err := fn(r, tx); err != nil {
		if errors.Is(err, ErrNoChange) {
			if opts.written != nil {
				opts.written(r)
			}
			return nil
		}
		return err
	}
	if tx.err != nil {
		return tx.err
	}
	if tx.derived && len(tx.lines) == 0 && len(repaired) == 0 {
		c.durable = false
	}
	if err := c.write(r, tx, info); err != nil {
		return err
	}
	if opts.written != nil {
		opts.written(r)
	}
	if err := c.appendLog(tx); err != nil {
		return err
	}
	// Everything another gracectl reads is in place: the registry file is
	// written, synced and renamed, the log lines are appended. Waiting for
	// the folder and the log to reach the disk need not hold the others up;
	// this call still returns only after both have.
	unlock()
	unlock = nil
	if !c.durable {
		return nil
	}
	if err := syncDir(s.Dir()); err != nil {
		return fmt.Errorf("cannot write registry %s: %w", s.Path(), err)
	}
	return nil
}

// change is one update's writing: whether it must reach the disk before
// update returns, and the audit log files it appended to.
type change struct {
	s        *Store
	durable  bool
	filePerm fs.FileMode
	logs     []*pendingLog
	keep     bool // writeOpts.keep
}

// write replaces the registry file with r, keeping the permissions of the
// file it replaces (info; nil when there was none).
func (c *change) write(r *Registry, tx *Tx, info fs.FileInfo) error {
	r.LastUpdated = tx.now
	r.AuditSeq = tx.seq
	r.PendingAudit = tx.lines
	perm := c.filePerm
	if info != nil {
		perm = info.Mode().Perm()
	}
	encode := r.Encode
	var kept bytes.Buffer
	if c.keep {
		if err := r.Encode(&kept); err != nil {
			return fmt.Errorf("cannot write registry %s: %w", c.s.Path(), err)
		}
		encode = func(w io.Writer) error {
			_, err := w.Write(kept.Bytes())
			return err
		}
	}
	if err := writeFileAtomicOpts(c.s.Path(), encode, perm, info, c.durable, false); err != nil {
		return fmt.Errorf("cannot write registry %s: %w", c.s.Path(), err)
	}
	if c.keep {
		r.src = kept.Bytes()
	}
	if info == nil {
		c.s.Notice.Printf("created registry %s", c.s.Path())
	}
	return nil
}

// appendLog appends the change's audit lines to the day's log.
func (c *change) appendLog(tx *Tx) error {
	if len(tx.lines) == 0 {
		return nil
	}
	l, err := appendLog(c.s.Root, tx.now.Time, tx.lines, c.filePerm)
	if err != nil {
		return fmt.Errorf("registry updated, but the audit log could not be written (the next change will append it): %w", systemErr(err))
	}
	c.logs = append(c.logs, l)
	return nil
}

// syncLogs closes the log files appended to, first making them durable if
// the change is; a failure becomes *err unless that is already set.
func (c *change) syncLogs(err *error) {
	for _, l := range c.logs {
		if !c.durable {
			l.f.Close()
			continue
		}
		if serr := l.sync(); serr != nil && *err == nil {
			*err = fmt.Errorf("the audit log could not be written: %w", serr)
		}
	}
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
