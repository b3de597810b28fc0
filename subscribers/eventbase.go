package subscribers

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The base of a new store's event numbers.
//
// A store created empty (a box rebuilt, a state directory lost) numbered
// its events, and every ISP's, from 1 again: a webhook receiver that
// dedupes by webhook-id (the event's ISPSeq) dropped the new box's events
// as ones it had had, and an API reader resuming after its saved number
// saw nothing new until the numbers passed it. So a new file's numbering
// starts at a base taken from the clock at its creation (newStoreBase:
// microseconds since the Unix epoch), the log's and every ISP's alike:
// its first event is base+1. A store created later starts above every
// number an earlier store of the same operator gave out, as long as that
// store gave out fewer than a million numbers a second on average since
// its own creation (each one an event, a durable write; a DHCP burst at
// the box's capacity is a few thousand a second) and the clock moved
// forward between the two creations; a store restored from a backup copy
// runs up to 2^32 numbers (71 minutes of the clock) ahead of it per
// restore (copyJump), so a store created within that long after such a
// restore may start below the restored one's numbers.
//
// The numbers up to the base were never given out: the log's trimming by
// count does not count them (the base is the first of the log's gaps,
// virtual), and neither do WaitEvents and SeqBefore. A reader asking
// after 0 (a new one) gets every event; one whose number is below the
// base read another store (the box before it was rebuilt) and is told it
// missed events: the log's oldest, as its readers see it, is base+1, not
// folded back to 1 as a restored copy's jump is (gapOldest), and an ISP's
// sequence starts at the base with no gap (the floor is the base:
// baseSeq).
//
// A file that already exists keeps its numbering: the base is set only
// in the transaction that creates the file (setUp), and a file created
// by an older ispmux has none (0: its numbers began at 1).

// keyEventBase (meta) is the base of a store created with one: the
// number before its first event (absent: 0).
var keyEventBase = []byte("event-seq-base")

// maxEventBase caps the base: 2^52, half the largest integer a JSON number
// (an IEEE double: JavaScript's) holds exactly, leaving 2^52 numbers above
// it (142 years at a million a second, copy jumps included) before an
// event's seq stops being exact in a JavaScript receiver. The clock of
// 2026 gives 1.8e15 (2^50.7); 2^52 is the clock of the year 2112, and a
// clock set further ahead gets the cap.
const maxEventBase = 1 << 52

// storeClock is the clock setUp takes a new store's base from (tests that
// name event numbers from 1 stop it at the zero time: numberFromOne).
var storeClock = time.Now

// newStoreBase is the base of a store created at now: its microseconds
// since the Unix epoch, at most maxEventBase (a clock before 1970: 0,
// numbering from 1 as before).
func newStoreBase(now time.Time) uint64 {
	us := now.UnixMicro()
	if us <= 0 {
		return 0
	}
	return min(uint64(us), maxEventBase)
}

// startNumbering makes a new file's event numbers, and every ISP's, start
// after base, in tx (setUp, on a file it created: its events bucket is
// empty with sequence 0).
func startNumbering(tx *bolt.Tx, base uint64) error {
	if base == 0 {
		return nil
	}
	if err := tx.Bucket(bucketEvents).SetSequence(base); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	v := binary.BigEndian.AppendUint64(nil, base)
	for _, k := range [][]byte{keyEventBase, keyEventISPBase, keyEventISPFloor} {
		if err := meta.Put(k, v); err != nil {
			return err
		}
	}
	return nil
}

// eventBase returns keyEventBase.
func eventBase(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyEventBase); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// logGaps is the event log's gaps as the Store holds them (s.gaps): the
// base, as a gap from 0, then the jumps of restored copies (readGaps).
func logGaps(tx *bolt.Tx) []seqGap {
	var gaps []seqGap
	if base := eventBase(tx); base > 0 {
		gaps = append(gaps, seqGap{0, base})
	}
	return append(gaps, readGaps(tx)...)
}

// EventBase returns the number before the first event of a store created
// with a base (its events, and every ISP's, are numbered from base+1: the
// microseconds since the Unix epoch when the file was created), or 0 for a
// store created by an ispmux that numbered from 1.
func (s *Store) EventBase() uint64 { return s.base }

// CreatedByOpen reports whether this Open created the file (a new store).
func (s *Store) CreatedByOpen() bool { return s.created }
