package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
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

// appendRecord appends r's encoding to b: header (body length, CRC-32C of
// the body), then the body: LSN, event seq (0: no event), event time
// (Unix ns), then the key, value, event ISP and event value, each
// length-prefixed (u32).
func appendRecord(b []byte, r *jrec) []byte {
	start := len(b)
	b = append(b, make([]byte, jrecHeader)...)
	seq, isp, t := r.event()
	var ns int64
	if seq != 0 {
		ns = t.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, r.lsn)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
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
	if l < 24+4*4 || l > jrecMaxBody || int(l) > len(b)-jrecHeader {
		return r, 0, false
	}
	body := b[jrecHeader : jrecHeader+int(l)]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return r, 0, false
	}
	r.lsn = binary.BigEndian.Uint64(body)
	r.evSeq = binary.BigEndian.Uint64(body[8:])
	ns := int64(binary.BigEndian.Uint64(body[16:]))
	rest := body[24:]
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
		r.evTime = time.Unix(0, ns)
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
	// append: see Store.journalFailed).
	lsn uint64
	buf []byte
}

// openJournal opens (creating) the journal at path and returns it with
// its records: the run of whole records from the start of the file whose
// LSNs follow each other (earlier generations' records may follow it;
// the caller skips those already checkpointed).
func openJournal(path string, noSync bool) (*journal, []jrec, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	j := &journal{f: f, path: path, noSync: noSync}
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
		if !ok || (len(recs) > 0 && r.lsn != recs[len(recs)-1].lsn+1) {
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
		j.buf = appendRecord(j.buf, r)
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

// reset starts a new generation at the start of the file, once every
// record written is checkpointed. It writes nothing: the old records left
// behind have LSNs up to the checkpointed one, which replay skips, and
// the new records overwrite them.
func (j *journal) reset() { j.tail = 0 }

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
