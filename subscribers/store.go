package subscribers

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ispmux/ispmux/internal/histo"
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

// schemaVersion is stored in the meta bucket; Open migrates files with a
// lower one (migrate.go) and refuses files with a higher one.
//
// 1: registrations, bindings, binding-expiry, events.
// 2: bindings keep the client identifier, the Option 82 sent, the ISP's
// ACK options, the lease time and the customer ID; events carry the
// customer ID and the access entry; the intents bucket.
// 3: customers; registrations keep Created; events carry the actor and the
// request id; the indexes devices-by-customer and events-by-isp; the
// change feed (changes).
// 4: bound and renewed events carry the lease end.
// 5: the onboarding bucket (onboarding leases, onboarding.go).
// 6: the binding-expiry index is gone (nothing read it: expiry runs from
// the lease table's heap in memory, rebuilt from the bindings at start),
// which saves every binding commit a write into a second tree.
// 7: the binding journal (journal.go; the meta bucket's journal-lsn): an
// older ispmux would not replay it and would lose the bindings it holds.
// 8: the binding journal's second file (STATE.journal.1), which an ispmux
// of schema 7 would not read.
// 9: per-ISP event numbers (eventseq.go): the events-by-isp index is keyed
// by the ISP's number, with the event's sequence as value, and the
// event-isp-seqs bucket holds each ISP's last number; an older ispmux
// would key its new entries by the global sequence among them.
// 10: the events-by-mac index (eventsmac.go); an older ispmux would
// append events without their entries and trim events without deleting
// theirs.
// 11: the events-by-mac key holds the event's ISP before its low bits
// (eventsmac.go); an older ispmux would read the new keys as malformed.
// 12: the events-by-mac index of a migrated file may be in the middle of
// its build (keyMACRebuild, migratemac.go), which an ispmux of schema 11
// (built in one transaction) would not finish, serving an index it took
// for whole (a review).
const schemaVersion = 12

// Defaults for Options.
const (
	DefaultEventRetention = 100000
	DefaultEventMaxAge    = 30 * 24 * time.Hour
	DefaultLockTimeout    = time.Second
	DefaultMaxBatchSize   = 1000

	DefaultChangeRetention = 1000000
	DefaultChangeMaxAge    = 7 * 24 * time.Hour

	// DefaultInitialMmapSize is the address space mapped at open: 1 GiB
	// of virtual memory on a 64-bit system, not of RAM (the map is
	// read-only and backed by the file; pages are resident only once
	// read). 0 on a 32-bit system: bbolt's own sizing. See
	// Options.InitialMmapSize.
	DefaultInitialMmapSize = (1 << 30) * (strconv.IntSize / 64)
)

var (
	bucketMeta          = []byte("meta")
	bucketRegistrations = []byte("registrations")
	bucketBindings      = []byte("bindings")
	bucketExpiry        = []byte("binding-expiry") // schemas 1–5 only
	bucketEvents        = []byte("events")
	bucketIntents       = []byte("intents")
	bucketCustomers     = []byte("customers")
	bucketDeviceIndex   = []byte("devices-by-customer")
	bucketEventIndex    = []byte("events-by-isp")
	bucketChanges       = []byte("changes")

	keySchema = []byte("schema")
)

// Options tune Open. The zero value is the production configuration.
type Options struct {
	// NoSync skips fsync. For tests and benchmarks only: with it a
	// successful commit may be lost on power failure.
	NoSync bool
	// EventRetention keeps the newest N events (and up to N/64, at most
	// 256, more between trims); <= 0 means DefaultEventRetention.
	EventRetention int
	// EventMaxAge drops the events older than this (measured from the
	// Time of the event being appended); <= 0 means DefaultEventMaxAge.
	EventMaxAge time.Duration
	// LockTimeout is how long Open waits for the file lock; <= 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// MaxBatchSize caps the writes per group commit; <= 0 means
	// DefaultMaxBatchSize.
	MaxBatchSize int
	// CommitWindow: a group commit leader that finds fewer than 8 writes
	// queued while the store is busy with concurrent writers (the
	// previous commit, less than a window ago, had more than one) waits
	// this long for more before it commits, so that more writes share a
	// commit's two fsyncs (CPU per write falls as batches grow; each
	// waits up to one window more). A lone writer never waits. 0: no
	// wait.
	CommitWindow time.Duration
	// ChangeRetention keeps the newest N entries of the change feed; <= 0
	// means DefaultChangeRetention.
	ChangeRetention int
	// ChangeMaxAge drops the change feed entries older than this
	// (measured from the Time of the change being appended); <= 0 means
	// DefaultChangeMaxAge.
	ChangeMaxAge time.Duration
	// InitialMmapSize is how much of the file bbolt maps at open; <= 0
	// means DefaultInitialMmapSize. bbolt remaps when the file outgrows
	// the map, and a remap waits for every open read transaction and
	// blocks new ones: on a fresh store (32 KiB map, doubled at each
	// remap) commits in a DHCP burst each waited for that. A map larger
	// than 16 MiB also makes the file grow in 16 MiB steps (one
	// truncate + fsync per step) instead of at every commit that needs a
	// new page, so the file's size on disk starts at 16 MiB (sparse).
	InitialMmapSize int
	// NoFollow refuses a store file that is a symbolic link (Compact,
	// root in a directory its owner may change). The journal's files are
	// never followed.
	NoFollow bool
	// Logger is told of Open's long work: the events-by-MAC index build
	// of a migrated file, or the rest of one an interrupted start left
	// (its start, how much was done, its progress every few seconds, its
	// end). nil: nothing is logged.
	Logger *slog.Logger
}

// Store is the durable subscriber store. Safe for concurrent use.
type Store struct {
	path string
	// broken is the error of the write transaction that met a damaged
	// page (update); once set, every bbolt transaction and every write
	// submitted after it returns it (boltUpdate, submit: appends already
	// queued for the journal may still land) and Close leaves the file
	// open. dead is set with it when a read transaction panicked as it
	// began (beginRead): then reads return it too.
	broken atomic.Pointer[writePanicError]
	dead   atomic.Pointer[storeDeadError]
	// wmu serialises boltUpdate's check of broken with its transaction.
	wmu sync.Mutex
	// relaySince: RelayIsSourceSince.
	relaySince time.Time
	// intentsFrom: IntentsOrderedFrom.
	intentsFrom uint64
	// migratedFrom: MigratedFrom.
	migratedFrom int
	retention    uint64
	maxAge       time.Duration
	// holds: the ISPs whose webhook cursor holds the log's count trim
	// (HoldEventsFor, eventhold.go).
	holds atomic.Pointer[[]string]

	changeRetention uint64
	changeMaxAge    time.Duration

	maxBatch int

	// writeTxs counts the write transactions the group commit ran,
	// committed or not (a test checks that one ApplyTenant is one).
	writeTxs atomic.Uint64
	// windowWaits counts the leaders that waited a commit window.
	windowWaits atomic.Uint64
	// writes counts the writes committed by the group commit's
	// transactions (CommitStats.Writes).
	writes atomic.Uint64
	// writeErrors counts the writes the group commit returned an error
	// for (CommitStats.WriteErrors).
	writeErrors atomic.Uint64
	// commitTime is the time of each group commit's write transaction,
	// fsync included (stats.go).
	commitTime histo.Histogram

	// trimLooked counts the events the trimming of the log looked at
	// (TestEventTrimCost checks it stays O(trimmed) per append). Written
	// only inside write transactions, which bbolt serialises.
	trimLooked uint64

	// gmu guards the group commit state (see commit.go). Lock order:
	// mu (read), then gmu; gmu is never held across a transaction.
	gmu sync.Mutex
	// queue holds the writes waiting for the next group commit.
	queue []*call
	// window is Options.CommitWindow; lastCommit when the last batch
	// ended and lastBatch its size (under gmu).
	window     time.Duration
	lastCommit time.Time
	lastBatch  int
	// leading is true while some writer is the leader (runs a batch).
	leading bool

	// viaDBBatch makes writes use bbolt's DB.Batch instead of the group
	// commit; set only by the comparison benchmark before first use.
	viaDBBatch bool
	// noJournal makes the binding commits go through bbolt transactions
	// instead of the journal; set only by the comparison benchmark.
	noJournal bool
	// ckptInLeader makes the checkpoints every journalMaxPending records
	// run through the group commit, as before the background checkpoint;
	// set only by the comparison benchmark (BenchmarkCommitTail).
	ckptInLeader bool

	// nmu guards notify: channels closed (and replaced by nil) after
	// every commit that appended to the change feed (notify[0], for
	// Watch) or to the event log (notify[1], for WaitEvents), and by
	// Close.
	nmu    sync.Mutex
	notify [2]chan struct{}

	// The binding journal (journal.go, checkpoint.go). jr is nil once
	// closed. The leader-only fields are used by the group commit's
	// leader (and by Open and Close, with no leader): pending (the
	// journaled records not yet in bbolt, in LSN order), appliedLSN (the
	// LSN bbolt's meta bucket holds, as far as the leader knows: a
	// background checkpoint may have stored a later one), jfailed (an
	// append failed: records go through bbolt until the next
	// checkpoint), txEvSeq (checkpointTx), ckptRunning (a background
	// checkpoint is running, or queued through the group commit) and
	// swappedUpTo (the last LSN the journal's other file holds: it is
	// free for the next swap once appliedLSN reaches it).
	jr          *journal
	syncVia     atomic.Pointer[[2]string] // JournalSync's answer: noteJournalSync
	pending     []*jrec
	appliedLSN  uint64
	jfailed     bool
	txEvSeq     uint64
	ckptRunning bool
	// txISP and txISPBase are checkpointTx's ISP sequences (nil: no
	// event written), and jISP journalAppend's scratch map.
	txISP       map[string]uint64
	txISPBase   uint64
	jISP        map[string]uint64
	swappedUpTo uint64
	// jcalls, tcalls and jrecs are the leader's scratch slices
	// (commitBatch, journalAppend).
	jcalls, tcalls []*call
	jrecs          []*jrec
	// pendingN is len(pending), for the readers' fast path; pendingB the
	// pending bindings' values by key (Binding reads them) and pendingEv
	// the pending records with an event, in LSN order (the event log's
	// followers read them: pendingevents.go), under pmu.
	pmu      sync.RWMutex
	pendingN atomic.Int64
	// bmu orders the bbolt writes of the journal's buckets (held by
	// commitTx and checkpointRecords) against the readers' copies of
	// the pending state (held for reading: snapshotView).
	bmu       sync.RWMutex
	pendingB  map[string]pendingVal
	pendingEv []*jrec
	// evSeq is the sequence number of the newest durable event (in the
	// journal or in bbolt): LastEventSeq, and the journal's next events.
	evSeq atomic.Uint64
	// ispLast is the ISPSeq of each ISP's newest durable event, like
	// evSeq (eventseq.go), and ispBase that of an ISP not in it; under
	// ispMu.
	ispMu   sync.Mutex
	ispLast map[string]uint64
	ispBase uint64
	// replayLegacy is set while Open replays a journal an ispmux of
	// schema 8 wrote (keyEventISPStart): its events are indexed by
	// their Seq, as that ispmux's readers knew them (eventAt).
	replayLegacy bool
	// replaying is set while Open replays the binding journal: the
	// replayed events trim nothing (trimEvents), since the ISPs whose
	// webhooks hold the log (HoldEventsFor) are not known yet; the
	// first append after Open trims as usual. (A review: a crash while
	// a receiver was down lost its held events at the replay.)
	replaying bool
	// bgCheckpoints counts the background checkpoints that ended
	// without error (committed, or found their records in the file).
	bgCheckpoints atomic.Uint64

	// backupMu serialises Backup (its mark on the live store).
	backupMu sync.Mutex
	// gaps are the event log's gaps: its base (a gap from 0), then the
	// jumps openedCopy made in its numbers (set at Open, read by the
	// trimming of the log: logGaps); copyJump is the
	// jump made by this Open (0: the file was not a backup copy).
	gaps     []seqGap
	copyJump uint64
	// base is the number before the first event of a store created
	// with one (eventbase.go; 0: numbered from 1), and created whether
	// this Open created the file.
	base    uint64
	created bool

	// mu is held for reading by every operation for its whole duration
	// and for writing by Close, so Close waits for them.
	mu sync.RWMutex
	// db is nil once closed.
	db *bolt.DB
}

// Open opens (creating if needed) the store at path, creates its buckets,
// and checks the schema version: a file of an older schema is migrated in
// place, in one transaction (see migrate.go; the events-by-mac index of a
// file of schema 10 or older is built after it in transactions of its
// own, resumed by the next Open after a crash: migratemac.go); a file of a newer one is
// refused with an error wrapping ErrSchema. If another process holds the
// file it fails after opts.LockTimeout with an error wrapping ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if opts.EventRetention <= 0 {
		opts.EventRetention = DefaultEventRetention
	}
	if opts.EventMaxAge <= 0 {
		opts.EventMaxAge = DefaultEventMaxAge
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if opts.ChangeRetention <= 0 {
		opts.ChangeRetention = DefaultChangeRetention
	}
	if opts.ChangeMaxAge <= 0 {
		opts.ChangeMaxAge = DefaultChangeMaxAge
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if err := checkStoreFile(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := checkForeignJournal(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var openFile func(string, int, os.FileMode) (*os.File, error)
	if opts.NoFollow {
		openFile = openNoFollow
	}
	db, err := openLocked(path, &bolt.Options{
		OpenFile:     openFile,
		Timeout:      opts.LockTimeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// The freelist is written by every commit (one more page in the
		// same fsync: no difference measured in BenchmarkCommitBinding)
		// rather than rebuilt at open by a walk of the whole file, which
		// cost ~1 CPU-s of a million-subscriber restart (bbolt's
		// freepages: every page checked, a map of every reachable page).
		// A store written without it is walked once, then has one.
		NoFreelistSync:  false,
		InitialMmapSize: opts.InitialMmapSize,
		MmapFlags:       mmapFlags,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w after %v (is another ispmux running with the same state_dir?)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}

	// A file that is already current is only read: a second Open writes
	// nothing.
	var current bool
	var relaySince time.Time
	var intentsFrom uint64
	var migratedFrom int
	var created bool
	err = db.View(func(tx *bolt.Tx) error {
		current = true
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				current = false
			}
		}
		if current {
			v := tx.Bucket(bucketMeta).Get(keySchema)
			var ordered bool
			relaySince, current = relaySinceOf(tx)
			intentsFrom, ordered = intentsFromOf(tx)
			current = current && ordered && len(v) == 1 && v[0] == schemaVersion
		}
		return nil
	})
	if err == nil && !current {
		err = update(db, func(tx *bolt.Tx) error {
			created = false // a retried transaction
			from, err := setUp(tx, &created)
			if err != nil {
				return err
			}
			if from < schemaVersion {
				migratedFrom = int(from)
			}
			relaySince, _ = relaySinceOf(tx)
			intentsFrom, _ = intentsFromOf(tx)
			return nil
		})
	}
	if err == nil {
		// A migrated file's events-by-mac index, or the rest of it
		// after a crash (migratemac.go); before the journal's replay
		// appends events with their entries.
		err = rebuildMACIndex(db, opts.Logger, migratedFrom > 0)
	}
	if err != nil {
		closeDB(db, err)
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{
		path:            path,
		retention:       uint64(opts.EventRetention),
		maxAge:          opts.EventMaxAge,
		changeRetention: uint64(opts.ChangeRetention),
		changeMaxAge:    opts.ChangeMaxAge,
		maxBatch:        opts.MaxBatchSize,
		window:          opts.CommitWindow,
		db:              db,
		relaySince:      relaySince,
		intentsFrom:     intentsFrom,
		migratedFrom:    migratedFrom,
		created:         created,
		jISP:            map[string]uint64{},
	}
	if err := s.openJournalFor(path, opts.NoSync); err != nil {
		if errors.As(err, new(ErrForeignJournal)) {
			// Made by this Open, holding nothing: the next Open finds no
			// file, and refuses the journal again, until the operator
			// decides. Removed while its lock is held: an Open waiting
			// for that lock finds the file gone from path (openLocked),
			// where one that took the lock between its release and the
			// removal went on in the file unlinked after it.
			_ = os.Remove(path)
		}
		closeDB(db, err)
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if s.copyJump, err = s.openedCopy(time.Now()); err == nil {
		err = s.reloadISPSeqs()
	}
	if err != nil {
		s.jr.close()
		closeDB(db, err)
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// pendingVal is a pending binding's value and the LSN of its record.
type pendingVal struct {
	val []byte
	lsn uint64
}

// OpenedFromCopy returns how far Open moved the event log's numbers
// because the file was a Backup copy (0: it was not): the first event
// after the copy's newest, N, is numbered N+jump+1.
func (s *Store) OpenedFromCopy() (jump uint64) { return s.copyJump }

// MigratedFrom returns the schema version Open migrated the file from to
// SchemaVersion (0: the file was new or already current). A migrated file
// is refused by an ispmux that predates SchemaVersion: a rollback restores
// the backup taken before the upgrade (docs/OPERATIONS.md).
func (s *Store) MigratedFrom() int { return s.migratedFrom }

// SchemaVersion is the store schema this build writes.
const SchemaVersion = schemaVersion

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// JournalSync says how the binding journal's appends are made durable:
// via "io_uring" (the waiting goroutine holds no P: internal/uring),
// "fdatasync" (the system call) or "none" (Options.NoSync); why, for
// fdatasync, is why io_uring is not used where it was refused or failed to
// run an fsync (then the journal drops it).
func (s *Store) JournalSync() (via, why string) {
	if p := s.syncVia.Load(); p != nil {
		return p[0], p[1]
	}
	return "", ""
}

// noteJournalSync records the journal's way of syncing for JournalSync
// (Open, and the leader when the journal dropped its ring).
func (s *Store) noteJournalSync() {
	via, why := s.jr.syncVia()
	s.syncVia.Store(&[2]string{via, why})
}

// Close waits for the operations in flight, then checkpoints the binding
// journal and closes the file. Closing twice returns ErrClosed. An error
// that is a *JournalKeptError (errors.As) lost nothing: the store is
// closed, and the next Open replays the journal (a full disk refused the
// checkpoint's pages).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return fmt.Errorf("close %s: %w", s.path, ErrClosed)
	}
	jerr := s.closeJournal()
	var err error
	if b := s.broken.Load(); b != nil {
		err = b // the file stays open until exit (closeDB)
	} else {
		err = s.db.Close()
	}
	s.db = nil
	if err == nil && jerr != nil {
		var kept *JournalKeptError
		if errors.As(jerr, &kept) {
			err = jerr // it says "binding journal" itself
		} else {
			err = fmt.Errorf("journal: %w", jerr)
		}
	}
	s.wake(wakeAll) // waiting readers find the store closed
	if err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// viewJournaled is view for a reader of the buckets the binding journal
// writes (bindings, events, events-by-isp): it first checkpoints the
// pending journal records, so fn sees every durable write.
func (s *Store) viewJournaled(fn func(*bolt.Tx) error) error {
	if err := s.checkpoint(); err != nil {
		return err
	}
	return s.view(fn)
}

// view runs fn in a read transaction of what bbolt holds: without the
// pending journal records (see viewJournaled; Binding reads those
// itself).
func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	tx, err := s.beginRead()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return guardRead(func() error { return fn(tx) })
}

// CorruptError reports a stored value that does not decode.
type CorruptError struct {
	Bucket string
	Key    []byte
	Err    error
}

func (e *CorruptError) Error() string {
	var nf *NewerFormatError
	if errors.As(e.Err, &nf) {
		// Not damage: a rollback (a trial read "corrupt value" and a
		// hex key).
		return fmt.Sprintf("the store's record in bucket %q key %x was %v", e.Bucket, e.Key, nf)
	}
	return fmt.Sprintf("%s in bucket %q key %x: %v", ErrCorrupt, e.Bucket, e.Key, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(bucket []byte, key []byte, err error) error {
	return &CorruptError{Bucket: string(bucket), Key: append([]byte(nil), key...), Err: err}
}

func macString(m MAC) string { return net.HardwareAddr(m[:]).String() }
