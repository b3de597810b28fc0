package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// A store file is checked before bbolt opens it. bbolt maps the file and
// trusts its meta page: a file cut short (a restore's copy that did not
// complete, a disk that filled while it was copied) made it read pages past
// the end of the file, and the process died of SIGBUS at start, in a
// restart loop under systemd, instead of saying the file is damaged; an
// empty file opened as a new, empty store, every registration and binding
// silently gone.

// bbolt's file layout (go.etcd.io/bbolt internal/common): pages start
// with a 16-byte header; pages 0 and 1 are meta pages, the meta at
// offset 16 of the page: magic, version, page size, flags (4 bytes each),
// the root bucket (16), the freelist's page (8), the high-water mark: the
// pages in use (8), the transaction id (8), then an FNV-64a checksum of
// the 56 bytes before it. Integers are in the machine's byte order.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaSum    = 56 // checksummed bytes of a meta
	boltMetaLen    = boltMetaSum + 8
)

// boltMeta is what checkStoreFile reads of a meta page.
type boltMeta struct {
	pageSize   uint32
	pages, txn uint64
}

// readBoltMeta decodes the meta page at off of f, if it is valid.
func readBoltMeta(f io.ReaderAt, off int64) (boltMeta, bool) {
	var b [boltMetaLen]byte
	if _, err := f.ReadAt(b[:], off+boltPageHeader); err != nil {
		return boltMeta{}, false
	}
	ne := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:boltMetaSum])
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[boltMetaSum:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ne.Uint32(b[8:]), pages: ne.Uint64(b[40:]), txn: ne.Uint64(b[48:])}, true
}

// checkStoreFile refuses, with an error wrapping ErrCorrupt, a store file
// that exists but is empty, or is shorter than the pages its newest valid
// meta page says it uses. A missing file is fine (a new store); one with
// no valid meta page is left to bbolt, which refuses it.
func checkStoreFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: the store file is empty (a copy that did not complete?); restore a complete copy, or remove it and its journal files to start with an empty store", ErrCorrupt)
	}
	m, ok := readBoltMeta(f, 0)
	ps := int64(os.Getpagesize())
	if ok {
		ps = int64(m.pageSize)
	}
	if m1, ok1 := readBoltMeta(f, ps); ok1 && (!ok || m1.txn > m.txn) {
		m, ok = m1, true
	}
	if !ok {
		return nil
	}
	if need := int64(m.pages) * int64(m.pageSize); fi.Size() < need {
		return fmt.Errorf("%w: the store file is truncated: %d bytes, its header says it uses %d (a copy that did not complete?); restore a complete copy", ErrCorrupt, fi.Size(), need)
	}
	return nil
}

// openNoFollow is os.OpenFile refusing a symbolic link at name
// (O_NOFOLLOW), for a file root opens in a directory another user owns.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("open %s: a symbolic link, refused", name)
	}
	return f, err
}

// openBolt is bolt.Open with a fault or panic in it (a damaged page that
// checkStoreFile's header check cannot see: bbolt reads the freelist and
// panics on a page that is not what it expects) returned as an error
// wrapping ErrCorrupt instead of ending the process.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	err = guardRead(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	return db, err
}

// guardRead runs fn, a read of the store's pages, with a fault or panic in
// it returned as an error wrapping ErrCorrupt: bbolt panics on a page that
// is not what it expects (a damaged file), and a read that ended the
// process (the restore at start, a listing) became a restart loop.
func guardRead(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the store file is damaged: %w: %v", ErrCorrupt, errPanicked, r)
		}
	}()
	return fn()
}

// errPanicked is wrapped by guardRead's error for a recovered panic.
var errPanicked = errors.New("bbolt panicked")

// beginRead begins a read transaction of s's file. bbolt checks its meta
// pages as the transaction begins and panics, if both are damaged (under
// the open store: they were checked at Open), with its meta and mmap
// locks still held: every later transaction, read or write, and Close
// would wait for them for ever. So a panic there is an error wrapping
// ErrCorrupt and the store is dead: every later read and write returns it
// (s.dead), and Close leaves the file open.
func (s *Store) beginRead() (*bolt.Tx, error) {
	if d := s.dead.Load(); d != nil {
		return nil, d
	}
	var tx *bolt.Tx
	err := guardRead(func() error {
		var err error
		tx, err = s.db.Begin(false)
		return err
	})
	if err != nil && tx == nil && errors.Is(err, errPanicked) {
		d := &storeDeadError{err: err}
		s.dead.CompareAndSwap(nil, d)
		s.broken.CompareAndSwap(nil, &writePanicError{v: err})
		return nil, d
	}
	return tx, err
}

// storeDeadError is the error of every transaction of a store whose read
// transaction panicked as it began (beginRead).
type storeDeadError struct{ err error }

func (e *storeDeadError) Error() string {
	return fmt.Sprintf("the store takes no more reads or writes until ispmux restarts (restore a copy, docs/OPERATIONS.md): %v", e.err)
}

func (e *storeDeadError) Unwrap() error { return e.err }

// update runs fn in one write transaction of db (db.Update) with a fault or
// panic in it returned as a *writePanicError (wrapping ErrCorrupt): a write
// descends the same pages a read does, and one that met a damaged page
// ended the process, again at each restart if no read at start met the
// page. bbolt rolls the transaction back as the panic unwinds, but its
// rollback reads the freelist page again, and a panic there leaves bbolt's
// writer lock held: every later write, and Close, would wait for ever. So
// the Store stops writing after one (Store.boltUpdate), and never closes the
// file (Close, closeDB). The panic's stack goes to standard error, as a
// crash's would: a bug in a transaction's own code panics too, and its
// error alone would read as a damaged file.
func update(db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "subscribers: a write transaction panicked: %v\n%s", r, debug.Stack())
			err = &writePanicError{v: r}
		}
	}()
	return db.Update(fn)
}

// writePanicError is a write transaction that panicked (update).
type writePanicError struct{ v any }

func (e *writePanicError) Error() string {
	return fmt.Sprintf("the store file is damaged (a write met it; the store takes no more writes until ispmux restarts: restore a copy, docs/OPERATIONS.md): %v", e.v)
}

func (e *writePanicError) Unwrap() error { return ErrCorrupt }

// isWritePanic reports whether err is or wraps a *writePanicError.
func isWritePanic(err error) bool {
	var e *writePanicError
	return errors.As(err, &e)
}

// closeDB closes db unless err says a write transaction panicked in it:
// its writer lock may still be held, and Close would wait for it for ever.
// The file then stays open (and locked) until the process exits.
func closeDB(db *bolt.DB, err error) error {
	if isWritePanic(err) {
		return err
	}
	return db.Close()
}

// boltUpdate is one write transaction of s's file (the package's update),
// and stops the store's writes after one that panicked: it returns that
// error from then on. s.wmu makes the check and the transaction one step
// for every writer (bbolt runs one write transaction at a time anyway):
// a writer that passed the check while another's transaction panicked
// would wait in bbolt for the writer lock the panic left held.
func (s *Store) boltUpdate(fn func(*bolt.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if b := s.broken.Load(); b != nil {
		return b
	}
	err := update(s.db, fn)
	var wp *writePanicError
	if errors.As(err, &wp) {
		s.broken.CompareAndSwap(nil, wp)
	}
	return err
}

// openLocked is openBolt for Open: the file at path, locked, and the file
// at path still. bbolt opens the path, then waits for its lock; a Compact
// that renamed its copy over path meanwhile released the lock of a file
// no longer at path, and ispmux would have gone on in that unlinked file,
// its writes lost at its next start (a review). So would an Open that
// made the file (none was there) and waited for its lock while another
// Open, which made it first, refused it and removed it (ErrForeignJournal:
// two starts on one state_dir): the file opened is compared with the one
// at path once locked, made or not. Such an open is made again, at most a
// few times.
func openLocked(path string, o *bolt.Options) (*bolt.DB, error) {
	for range 3 {
		var f *os.File
		oo := *o
		open := o.OpenFile
		if open == nil {
			open = os.OpenFile
		}
		oo.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
			var err error
			f, err = open(name, flag, mode)
			return f, err
		}
		db, err := openBolt(path, &oo)
		if err != nil {
			return nil, err
		}
		opened, err := f.Stat()
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		if at, err := os.Stat(path); err == nil && os.SameFile(opened, at) {
			return db, nil
		}
		_ = db.Close()
	}
	return nil, fmt.Errorf("the file at %s was replaced while its lock was awaited, three times (ispmux compact?)", path)
}
