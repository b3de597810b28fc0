package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
)

// The binding journal: a write-ahead log for CommitBinding and
// CommitBindingEvent (see "Binding journal" in the package doc).

// journalMax is the most the journal file grows to; an append that would
// pass it checkpoints first. A variable for tests.
var journalMax int64 = 8 << 20

const (
	// journalGrow is the step the file grows by, zero-filled and
	// fsynced once, so that appends overwrite allocated blocks and their
	// fdatasync writes no file metadata.
	journalGrow = 1 << 20
	// journalMaxPending is the number of journaled records at which a
	// checkpoint is started in the background: it bounds the replay at
	// open and the memory of the pending records.
	journalMaxPending = 1024
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

// journal is the binding journal's file. Only the group commit's leader
// uses it (appends, reset); Open and Close use it with no leader.
type journal struct {
	f      *os.File
	path   string
	noSync bool
	// size is the file's (zero-filled) length; tail where the next
	// append goes.
	size, tail int64
	// lsn is the last LSN handed out (written, or burnt by a failed
	// append: see Store.journalAppend).
	lsn uint64
	// tag is the current generation's tag, in every record it writes:
	// random, new at open and at every reset. The scan at open stops at
	// a record of another tag, so a record left from an earlier
	// generation is never taken for the next one, even where its LSN
	// would follow (an LSN handed out again after a crash: a power loss
	// can keep a later record of a batch and lose an earlier one, and
	// the LSNs past the hole are handed out again).
	tag uint64
	buf []byte
}

// openJournal opens (creating) the journal at path and returns it with
// its records: the run of whole records from the start of the file of
// one tag whose LSNs follow each other (the caller skips those already
// checkpointed). The journal's next generation gets a new tag.
func openJournal(path string, noSync bool) (*journal, []jrec, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if os.IsNotExist(statErr) && !noSync {
		// A new file: its directory entry is durable before any
		// record in it is acknowledged.
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("journal %s: sync directory: %w", path, err)
		}
	}
	j := &journal{f: f, path: path, noSync: noSync, tag: newTag()}
	fail := func(err error) (*journal, []jrec, error) {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	j.size = min(st.Size(), journalMax)
	data := make([]byte, j.size)
	if _, err := io.ReadFull(f, data); err != nil {
		return fail(err)
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
	return j, recs, nil
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
	if end > j.size {
		if err := j.grow(end); err != nil {
			return err
		}
	}
	if _, err := j.f.WriteAt(j.buf, j.tail); err != nil {
		return err
	}
	failpoint.Hit(failpoint.JournalAfterWrite)
	if !j.noSync {
		if err := fdatasync(j.f); err != nil {
			return err
		}
	}
	failpoint.Hit(failpoint.JournalAfterSync)
	j.tail = end
	return nil
}

// grow zero-fills the file up to at least end (in journalGrow steps) and
// fsyncs it, file size included.
func (j *journal) grow(end int64) error {
	size := min((end+journalGrow-1)/journalGrow*journalGrow, journalMax)
	if _, err := j.f.WriteAt(make([]byte, size-j.size), j.size); err != nil {
		return err
	}
	if !j.noSync {
		if err := j.f.Sync(); err != nil {
			return err
		}
	}
	j.size = size
	return nil
}

// reset starts a new generation, with a new tag, at the start of the
// file, once every record written is checkpointed. It writes nothing: the
// old records left behind are of another tag (and have LSNs up to the
// checkpointed one), and the new records overwrite them.
func (j *journal) reset() { j.tail, j.tag = 0, newTag() }

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

// invalidate makes the file hold no record (its first header zeroed,
// durably), for a clean Close: a file restored from a backup then finds
// no earlier records to replay.
func (j *journal) invalidate() error {
	if _, err := j.f.WriteAt(make([]byte, jrecHeader), 0); err != nil {
		return err
	}
	if j.noSync {
		return nil
	}
	return fdatasync(j.f)
}

func (j *journal) close() error { return j.f.Close() }
