package subscribers

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// MAC is a subscriber's Ethernet address.
type MAC = [6]byte

// Sentinel errors, for errors.Is.
var (
	// ErrNotFound: no registration or binding under that key.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: a stored value (or key) does not decode; see CorruptError.
	ErrCorrupt = errors.New("corrupt value")
	// ErrInvalid: the caller passed a value that cannot be stored.
	ErrInvalid = errors.New("invalid argument")
	// ErrLocked: another process (or another Store in this one) holds the file.
	ErrLocked = errors.New("state file is locked")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrSchema: the file was written by a newer, incompatible ispmux.
	ErrSchema = errors.New("unsupported schema version")
)

// schemaVersion is stored in the meta bucket; Open refuses files with a
// higher one.
const schemaVersion = 1

// Defaults for Options.
const (
	DefaultEventRetention = 100000
	DefaultLockTimeout    = time.Second
	DefaultMaxBatchSize   = 1000
)

var (
	bucketMeta          = []byte("meta")
	bucketRegistrations = []byte("registrations")
	bucketBindings      = []byte("bindings")
	bucketExpiry        = []byte("binding-expiry")
	bucketEvents        = []byte("events")

	keySchema = []byte("schema")
)

// Options tune Open. The zero value is the production configuration.
type Options struct {
	// NoSync skips fsync. For tests and benchmarks only: with it a
	// successful commit may be lost on power failure.
	NoSync bool
	// EventRetention keeps the newest N events; <= 0 means
	// DefaultEventRetention.
	EventRetention int
	// LockTimeout is how long Open waits for the file lock; <= 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// MaxBatchSize caps the writes per group commit; <= 0 means
	// DefaultMaxBatchSize.
	MaxBatchSize int
}

// Store is the durable subscriber store. Safe for concurrent use.
type Store struct {
	path      string
	retention uint64

	maxBatch int

	// gmu guards the group commit state (see commit.go). Lock order:
	// mu (read), then gmu; gmu is never held across a transaction.
	gmu sync.Mutex
	// queue holds the writes waiting for the next group commit.
	queue []*call
	// leading is true while some writer is the leader (runs a batch).
	leading bool

	// viaDBBatch makes writes use bbolt's DB.Batch instead of the group
	// commit; set only by the comparison benchmark before first use.
	viaDBBatch bool

	// mu is held for reading by every operation for its whole duration
	// and for writing by Close, so Close waits for them.
	mu sync.RWMutex
	// db is nil once closed.
	db *bolt.DB
}

// Open opens (creating if needed) the store at path, creates its buckets,
// and checks the schema version. If another process holds the file it fails
// after opts.LockTimeout with an error wrapping ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if opts.EventRetention <= 0 {
		opts.EventRetention = DefaultEventRetention
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.LockTimeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt by scanning at open instead of being
		// written on every commit: fewer pages per fsynced transaction.
		NoFreelistSync: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w after %v (is another ispmux running with the same state_dir?)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}

	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRegistrations, bucketBindings, bucketExpiry, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 1 {
				return &CorruptError{Bucket: string(bucketMeta), Key: keySchema, Err: errors.New("schema version is not one byte")}
			}
			if v[0] > schemaVersion {
				return fmt.Errorf("%w %d (this ispmux supports up to %d; was the file written by a newer release?)", ErrSchema, v[0], schemaVersion)
			}
			return nil
		}
		return meta.Put(keySchema, []byte{schemaVersion})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{path: path, retention: uint64(opts.EventRetention), maxBatch: opts.MaxBatchSize, db: db}, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close waits for the operations in flight, then closes the file.
// Closing twice returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return fmt.Errorf("close %s: %w", s.path, ErrClosed)
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// CorruptError reports a stored value that does not decode.
type CorruptError struct {
	Bucket string
	Key    []byte
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s in bucket %q key %x: %v", ErrCorrupt, e.Bucket, e.Key, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(bucket []byte, key []byte, err error) error {
	return &CorruptError{Bucket: string(bucket), Key: append([]byte(nil), key...), Err: err}
}

func macString(m MAC) string { return net.HardwareAddr(m[:]).String() }
