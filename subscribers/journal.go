package subscribers

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/internal/uring"
)

// The binding journal: a write-ahead log for CommitBinding and
// CommitBindingEvent (see "Binding journal" in the package doc).

// Variables for tests.
var (
	// journalMax is the most a journal file grows to; an append that
	// would pass it goes through bbolt instead (a checkpoint).
	journalMax int64 = 8 << 20
	// journalMaxPending is the number of journaled records at which a
	// background checkpoint starts (while one runs, more records pend,
	// up to journalMax in the other file: a checkpoint through the group
	// commit takes the rest when that file is full). 4096: a checkpoint's
	// pages and fsyncs slow the appends' fdatasyncs while it runs, and
	// over a store of 50k bindings 4096 random records dirty less than
	// twice the leaf pages 1024 do (BenchmarkCommitTail: 1024 gave the
	// commits a p99 of 6–8 ms, 4096 2.5–4.1 ms).
	journalMaxPending = 4096
	// newRing opens the journal's io_uring (a test makes it fail, as it
	// does where io_uring is refused, or gives a syncer that records).
	newRing = func() (syncer, error) {
		r, err := uring.New()
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	// allocate reserves a journal file's blocks: fallocate (a test makes
	// it fail as it does on a file system without fallocate(2)).
	allocate = fallocate
)

// syncer makes a file's data durable as fdatasync(2) does: *uring.Ring.
type syncer interface {
	Sync(f *os.File) error
	Close() error
}

const (
	// journalGrow is the step the file grows by, reserved (reserve) and
	// fsynced once, so that appends overwrite allocated blocks: a full
	// disk cannot fail them, and their fdatasync writes no file metadata.
	journalGrow = 1 << 20
	// journalInitial is what Open reserves a file to: a generation of
	// journalMaxPending records (~300 bytes each) fits, so the appends
	// under load never wait for a grow.
	journalInitial = 2 * journalGrow
	// jrecHeader is a record's header: the body's length and its CRC-32C.
	jrecHeader = 8
	// jrecFixed is the fixed part of a record's body: tag, LSN, event
	// seq, event time (seconds, nanoseconds).
	jrecFixed = 8 + 8 + 8 + 8 + 4
	// jrecMaxBody bounds a record's body (a binding and an event are a
	// few hundred bytes; the options a DHCP ACK may carry, a few KB).
	jrecMaxBody = 1 << 20
)

// keyJournalLSN (meta bucket) holds the LSN of the last journal record
// the file holds (checkpointed), big-endian. Replay skips records up to it.
var keyJournalLSN = []byte("journal-lsn")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errJournalFull: the records do not fit in the journal; the caller
// writes them through a bbolt transaction instead (a checkpoint).
var errJournalFull = errors.New("journal full")

// jrec is one journaled write: a binding put and, if ev is set, the event
// recording it.
type jrec struct {
	// tag is the journal generation's tag (decoded records only: the
	// appended ones get the journal's current tag).
	tag      uint64
	lsn      uint64
	key, val []byte // the bindings bucket's key and value
	ev       *Event // nil: no event; ev.Seq is assigned by the leader
	evVal    []byte // encodeEvent(ev)
	// Decoded records (replay) have no ev but these:
	evSeq  uint64
	evISP  string
	evTime time.Time
}

// event returns the record's event sequence number, ISP and time.
func (r *jrec) event() (seq uint64, isp string, t time.Time) {
	if r.ev != nil {
		return r.ev.Seq, r.ev.ISP, r.ev.Time
	}
	return r.evSeq, r.evISP, r.evTime
}

// ispSeq returns the record's event's ISPSeq (eventseq.go): given by the
// leader to an appended record; 0 for a decoded one (replay numbers it
// after the ISP's last, as the leader did: the journal holds no ISPSeq).
func (r *jrec) ispSeq() uint64 {
	if r.ev != nil {
		return r.ev.ISPSeq
	}
	return 0
}

// appendRecord appends r's encoding, in the generation tag, to b: header
// (body length, CRC-32C of the body), then the body: tag, LSN, event seq
// (0: no event), event time (Unix seconds, then nanoseconds: u32), then
// the key, value, event ISP and event value, each length-prefixed (u32).
func appendRecord(b []byte, tag uint64, r *jrec) []byte {
	start := len(b)
	b = append(b, make([]byte, jrecHeader)...)
	seq, isp, t := r.event()
	var secs int64
	var nanos uint32
	if seq != 0 {
		secs, nanos = t.Unix(), uint32(t.Nanosecond())
	}
	b = binary.BigEndian.AppendUint64(b, tag)
	b = binary.BigEndian.AppendUint64(b, r.lsn)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(secs))
	b = binary.BigEndian.AppendUint32(b, nanos)
	for _, f := range [][]byte{r.key, r.val, []byte(isp), r.evVal} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	body := b[start+jrecHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(body, crcTable))
	return b
}

// decodeRecord decodes the record at the start of b and returns it with
// its encoded length, or ok false if b does not start with a whole record
// whose checksum matches (the end of the journal: never written, torn, or
// left from an earlier generation).
func decodeRecord(b []byte) (r jrec, n int, ok bool) {
	if len(b) < jrecHeader {
		return r, 0, false
	}
	l := binary.BigEndian.Uint32(b)
	if l < jrecFixed+4*4 || l > jrecMaxBody || int(l) > len(b)-jrecHeader {
		return r, 0, false
	}
	body := b[jrecHeader : jrecHeader+int(l)]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return r, 0, false
	}
	r.tag = binary.BigEndian.Uint64(body)
	r.lsn = binary.BigEndian.Uint64(body[8:])
	r.evSeq = binary.BigEndian.Uint64(body[16:])
	secs := int64(binary.BigEndian.Uint64(body[24:]))
	nanos := binary.BigEndian.Uint32(body[32:])
	rest := body[jrecFixed:]
	var fields [4][]byte
	for i := range fields {
		if len(rest) < 4 {
			return r, 0, false
		}
		fl := binary.BigEndian.Uint32(rest)
		if uint64(fl) > uint64(len(rest)-4) {
			return r, 0, false
		}
		fields[i] = rest[4 : 4+fl]
		rest = rest[4+fl:]
	}
	if len(rest) != 0 {
		return r, 0, false
	}
	r.key, r.val, r.evISP, r.evVal = fields[0], fields[1], string(fields[2]), fields[3]
	if r.evSeq != 0 {
		if nanos >= 1e9 {
			return r, 0, false
		}
		r.evTime = time.Unix(secs, int64(nanos))
	}
	return r, jrecHeader + int(l), true
}

// journal is the binding journal: two files, of which appends go to one
// (cur) while a background checkpoint writes the other's records into
// bbolt (see "Binding journal" in the package doc). Only the group
// commit's leader uses it (appends, reset, swap); Open and Close use it
// with no leader.
type journal struct {
	files  [2]*os.File
	paths  [2]string
	noSync bool
	// ring syncs the appends through io_uring, so that the group commit's
	// leader waits for its fdatasync in the netpoller instead of holding
	// a P in the system call (internal/uring); nil where io_uring is not
	// available (ringErr says why): fdatasync(2).
	ring    syncer
	ringErr error
	// sizes are the files' (reserved) lengths; tail where the next
	// append goes in files[cur].
	sizes [2]int64
	cur   int
	tail  int64
	// lsn is the last LSN handed out (written, or burnt by a failed
	// append: see Store.journalAppend).
	lsn uint64
	// tag is the current generation's tag, in every record it writes:
	// random, new at open and at every reset or swap. The scan at open
	// stops at a record of another tag, so a record left from an
	// earlier generation is never taken for the next one, even where its
	// LSN would follow (an LSN handed out again after a crash: a power
	// loss can keep a later record of a batch and lose an earlier one,
	// and the LSNs past the hole are handed out again).
	tag uint64
	buf []byte
}

// journalPaths returns the journal's two files for the store file path:
// STATE.journal (the only one before the second was added, so a journal
// left by an older ispmux replays) and STATE.journal.1.
func journalPaths(path string) [2]string {
	return [2]string{path + ".journal", path + ".journal.1"}
}

// JournalFiles returns the binding journal's two files beside the store
// file path: a store is the file and these (a backup tool must not write
// over them; a restore removes them).
func JournalFiles(path string) [2]string { return journalPaths(path) }

// openJournal opens (creating, and reserving at least journalInitial
// bytes of each file: reserve) the journal of the store file path and
// returns it with the records of its two files: of each, the run of whole
// records from the start of the file of one tag whose LSNs follow each
// other (the caller merges them and skips those already checkpointed).
// The journal's next generation gets a new tag and starts in the first
// file.
func openJournal(path string, noSync bool) (*journal, [2][]jrec, error) {
	j := &journal{paths: journalPaths(path), noSync: noSync, tag: newTag()}
	if !noSync {
		j.ring, j.ringErr = newRing() // nil: fdatasync(2)
	}
	var runs [2][]jrec
	for i, p := range j.paths {
		recs, err := j.openFile(i, p)
		if err != nil {
			j.close()
			return nil, runs, fmt.Errorf("journal %s: %w", p, err)
		}
		runs[i] = recs
	}
	return j, runs, nil
}

// openFile opens (creating) the journal file i at p, reads its run of
// records and reserves its blocks, at least journalInitial bytes of them.
func (j *journal) openFile(i int, p string) ([]jrec, error) {
	_, statErr := os.Stat(p)
	// Never a link: the journal is this store's own file (Compact opens
	// it as root in the store owner's directory).
	f, err := openNoFollow(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	j.files[i] = f
	if os.IsNotExist(statErr) && !j.noSync {
		// A new file: its directory entry is durable before any
		// record in it is acknowledged.
		if err := syncDir(filepath.Dir(p)); err != nil {
			return nil, fmt.Errorf("sync directory: %w", err)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	j.sizes[i] = min(st.Size(), journalMax)
	data := make([]byte, j.sizes[i])
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	var recs []jrec
	for off := 0; ; {
		r, n, ok := decodeRecord(data[off:])
		if !ok || (len(recs) > 0 && (r.tag != recs[0].tag || r.lsn != recs[len(recs)-1].lsn+1)) {
			break
		}
		recs = append(recs, r)
		off += n
	}
	// Reserved at every open, not only when the file is made: a copy of
	// the state directory that keeps holes (cp --sparse=always, rsync -S,
	// a restore through a backup tool) turns the zeros back into holes,
	// and the size the file still shows then reserves nothing (a field
	// trial: a full disk failed the appends of a journal so copied). And
	// ahead now, not at the first appends after a swap.
	size := max(j.sizes[i], min(journalInitial, journalMax))
	gaps, err := holes(f, j.sizes[i])
	if err != nil {
		return nil, fmt.Errorf("find its holes: %w", err)
	}
	if j.sizes[i] < size {
		gaps = append(gaps, span{j.sizes[i], size})
	}
	if err := j.reserve(i, size, gaps, data); err != nil {
		return nil, fmt.Errorf("reserve its %d bytes: %w", size, err)
	}
	return recs, nil
}

// mergeRuns returns the records of both files' runs with LSNs past
// applied, in LSN order, up to the first missing LSN (a hole: a power
// loss during a batch, never acknowledged, or a damaged record; Open then
// empties both files before it hands those LSNs out again). It
// returns an error if the first of them is not applied + 1 (records
// lost: a store file restored from a backup under a journal of later
// writes) or if an LSN is in both runs.
func mergeRuns(runs [2][]jrec, applied uint64) ([]*jrec, error) {
	var recs []*jrec
	for i := range runs {
		for k := range runs[i] {
			if runs[i][k].lsn > applied {
				recs = append(recs, &runs[i][k])
			}
		}
	}
	slices.SortFunc(recs, func(a, b *jrec) int { return cmp.Compare(a.lsn, b.lsn) })
	for i, r := range recs {
		switch {
		case i == 0 && r.lsn != applied+1:
			return nil, fmt.Errorf("its records start at LSN %d but the store holds them up to %d (a journal not written after this file: restored from a backup?)", r.lsn, applied)
		case i > 0 && r.lsn == recs[i-1].lsn:
			return nil, fmt.Errorf("LSN %d is in both of its files", r.lsn)
		case i > 0 && r.lsn != recs[i-1].lsn+1:
			return recs[:i], nil
		}
	}
	return recs, nil
}

// append writes recs after the tail and makes them durable (one write,
// one fdatasync). It returns errJournalFull, having written nothing, if
// they do not fit.
func (j *journal) append(recs []*jrec) error {
	j.buf = j.buf[:0]
	for _, r := range recs {
		j.buf = appendRecord(j.buf, j.tag, r)
	}
	end := j.tail + int64(len(j.buf))
	if end > journalMax {
		return errJournalFull
	}
	if end > j.sizes[j.cur] {
		if err := j.grow(j.cur, end); err != nil {
			return err
		}
	}
	f := j.files[j.cur]
	if _, err := f.WriteAt(j.buf, j.tail); err != nil {
		return err
	}
	failpoint.Hit(failpoint.JournalAfterWrite)
	if !j.noSync {
		if err := j.sync(f); err != nil {
			return err
		}
	}
	failpoint.Hit(failpoint.JournalAfterSync)
	j.tail = end
	return nil
}

// sync makes f's data durable: through the ring if there is one. If the
// ring could not run the fsync (uring.NotRunError: the file was not looked
// at), the journal drops the ring and calls fdatasync(2) from then on.
func (j *journal) sync(f *os.File) error {
	if j.ring != nil {
		err := j.ring.Sync(f)
		var nr *uring.NotRunError
		if !errors.As(err, &nr) {
			return err
		}
		j.ring.Close()
		j.ring, j.ringErr = nil, err
	}
	return fdatasync(f)
}

// syncVia says how appends are made durable and, for fdatasync, why
// io_uring is not used (Store.JournalSync).
func (j *journal) syncVia() (via, why string) {
	switch {
	case j.noSync:
		return "none", ""
	case j.ring != nil:
		return "io_uring", ""
	case j.ringErr != nil:
		return "fdatasync", j.ringErr.Error()
	}
	return "fdatasync", ""
}

// grow reserves file i up to at least end (in journalGrow steps).
func (j *journal) grow(i int, end int64) error {
	size := min((end+journalGrow-1)/journalGrow*journalGrow, journalMax)
	return j.reserve(i, size, []span{{j.sizes[i], size}}, nil)
}

// span is a range of a file's bytes: [from, to).
type span struct{ from, to int64 }

// reserve gives file i's gaps blocks of their own and sets its size to
// size: gaps are the ranges below size that have none (the file's holes,
// and what it grows by), in order. Each is allocated (fallocate(2)), then
// written over: with the file's own bytes where it held any (held: what
// Open read; a hole reads as zeros, and a file system that reported a
// hole over data, as OpenZFS 2.1.13 and 2.2.0 could, keeps it), zeros
// past them. The file is then fsynced, its size included.
//
// An append into the reserved bytes (up to sizes[i]) then needs no block:
// a full disk cannot fail it, nor the zeroing of the first headers at
// Close (invalidate), on ext4, xfs and tmpfs. fallocate reserves the
// blocks where the file system can and says so before anything is
// written, where zeros alone are given back as holes by a sparse copy or
// a compressing file system. The bytes are written too: on ext4 and xfs
// fallocate's blocks are unwritten extents, and an append's fdatasync into
// one also commits the extent's change to written (file system metadata,
// what the zeros were written to spare the appends); measured on ext4
// (this development VM, busy), 3 runs of 500 appends of 600 bytes with an
// fdatasync each: 158–259 µs an append into fallocated blocks, 139–209 µs
// into ones zero-filled after. Only the gaps are allocated: xfs reserves
// space for the whole range of a fallocate before it looks at the blocks
// there, so one over a whole written file fails on a full disk (a review:
// a start with a fully reserved journal refused). Where fallocate is not
// supported (EOPNOTSUPP: some network and copy-on-write file systems),
// the writes are the only reservation; on btrfs (copy on write) none
// holds, as every overwrite takes a new block.
func (j *journal) reserve(i int, size int64, gaps []span, held []byte) error {
	f := j.files[i]
	var buf []byte
	for _, g := range gaps {
		if g.from >= g.to {
			continue
		}
		if err := allocate(f, g.from, g.to-g.from); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
		if n := int(g.to - g.from); n > len(buf) {
			buf = make([]byte, n)
		}
		b := buf[:g.to-g.from]
		clear(b)
		if g.from < int64(len(held)) {
			copy(b, held[g.from:min(g.to, int64(len(held)))])
		}
		if _, err := f.WriteAt(b, g.from); err != nil {
			return err
		}
	}
	if buf != nil && !j.noSync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	j.sizes[i] = size
	return nil
}

// reset starts a new generation, with a new tag, at the start of the
// current file, once every record written is checkpointed. It writes
// nothing: the old records left behind are of another tag (and have LSNs
// up to the checkpointed one), and the new records overwrite them.
func (j *journal) reset() { j.tail, j.tag = 0, newTag() }

// swap starts a new generation at the start of the other file, whose
// records must all be checkpointed: the current file's records are then
// written into bbolt by a background checkpoint while appends go on.
func (j *journal) swap() { j.cur ^= 1; j.reset() }

// newTag returns a random generation tag.
func newTag() uint64 { return rand.Uint64() }

// syncDir fsyncs the directory dir (a file created in it).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// invalidate makes the files hold no record (their first headers zeroed,
// durably): at a clean Close, so that a file restored from a backup finds
// no earlier records to replay, and at Open once the records are
// replayed.
func (j *journal) invalidate() error {
	for _, f := range j.files {
		if _, err := f.WriteAt(make([]byte, jrecHeader), 0); err != nil {
			return err
		}
		if !j.noSync {
			if err := fdatasync(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// close closes the files that are open, and the ring.
func (j *journal) close() error {
	var err error
	if j.ring != nil {
		err = j.ring.Close()
	}
	for _, f := range j.files {
		if f == nil {
			continue
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
