package subscribers

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Per-ISP event numbers.
//
// The event log's Seq is one sequence for the whole box: the gaps between
// one ISP's own Seqs would count the events of every other ISP (the
// activity of its competitors' customers on the same access network). So
// each event with an ISP also gets ISPSeq, its number in its ISP's own
// sequence, given out in the same transaction (or journal append) as Seq,
// one more than the ISP's last: an ISP's consecutive events have
// consecutive numbers. The ISP's reads (EventsOf, EventsPage with an ISP,
// WebhookEvents, CountEventsOf, WaitEventsOf) are numbered, bounded and
// resumed in it; the operator's (Events) in Seq.
//
// The events-by-isp index is keyed by (ISP, ISPSeq), its value the
// event's Seq (8 bytes). The events a store of schema 8 or older held keep
// their index entries as they were, keyed by Seq with no value: their
// ISPSeq is their Seq (so the numbers an ISP already read, its API
// cursors and its webhook receiver's cursor and ids, stay valid), and the
// migration starts every ISP's sequence at the log's newest Seq then (the
// base, in the meta bucket), so the ISPs' new numbers are above every old
// one. A jump from an ISP's last event to where its sequence goes on (the
// migration's, and a restored copy's: openedCopy) is a gap of that ISP:
// numbers never given out, which are no events it missed. The numbers
// below the log's oldest event at the migration were trimmed before it,
// nobody knows whose: a reader of any ISP still behind them is told it
// missed them (the floor, for an ISP with no event then; ispBoundsTx, for
// one whose oldest event is an old one), as it was before schema 9.

var (
	// bucketEventISPSeq holds each ISP's sequence: key the ISP's name,
	// value its last ISPSeq given out (8 bytes) and its gaps (16 bytes
	// each, as keyEventGaps). An ISP without an entry is at the base,
	// with a gap from 0 to it.
	bucketEventISPSeq = []byte("event-isp-seqs")
	// keyEventISPBase (meta) is where the ISPs' sequences began: the
	// log's newest Seq when schema 9 was first opened (0, or absent, for
	// a store created at schema 9), moved by every restored copy's jump.
	keyEventISPBase = []byte("event-isp-base")
	// keyEventISPFloor (meta) is the number before the log's oldest
	// event when schema 9 was first opened (absent: 0): the numbers up to
	// it may have been any ISP's events, trimmed; those from there to the
	// base were of the ISPs with an entry then, and are gaps of the others.
	keyEventISPFloor = []byte("event-isp-floor")
	// keyEventISPStart (meta), present: the 8 → 9 migration has not yet
	// started the ISPs' sequences (startISPSeqs), which waits for the
	// binding journal's replay at Open (openJournalFor): its records
	// were written by an ispmux of schema 8, whose readers knew their
	// events by their Seq (replayLegacy).
	keyEventISPStart = []byte("event-isp-start")
)

// ispSeq is one ISP's sequence: the last number given out and the gaps.
type ispSeq struct {
	last uint64
	gaps []seqGap
}

// ispBase returns keyEventISPBase.
func ispBase(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyEventISPBase); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// ispFloor returns keyEventISPFloor.
func ispFloor(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyEventISPFloor); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// baseSeq is the sequence of an ISP without an entry: at the base, with a
// gap from the floor (the numbers up to it may have been its events,
// trimmed before schema 9: a reader behind them is told it missed them,
// as it was before).
func baseSeq(base, floor uint64) ispSeq {
	if base == 0 {
		return ispSeq{}
	}
	if floor >= base {
		return ispSeq{last: base}
	}
	return ispSeq{last: base, gaps: []seqGap{{floor, base - floor}}}
}

// readISPSeq returns isp's sequence in tx. A damaged entry (shorter than
// 8 bytes) reads as the log's newest Seq, which no ISPSeq passes (each is
// given out with a Seq at least as large), with no gaps.
func readISPSeq(tx *bolt.Tx, isp string) ispSeq {
	v := tx.Bucket(bucketEventISPSeq).Get([]byte(isp))
	if v == nil {
		return baseSeq(ispBase(tx), ispFloor(tx))
	}
	return decodeISPSeq(tx, v)
}

// decodeISPSeq decodes an entry of bucketEventISPSeq (see readISPSeq).
func decodeISPSeq(tx *bolt.Tx, v []byte) ispSeq {
	if len(v) < 8 {
		return ispSeq{last: tx.Bucket(bucketEvents).Sequence()}
	}
	return ispSeq{last: binary.BigEndian.Uint64(v), gaps: decodeGaps(v[8:])}
}

// putISPSeq stores isp's sequence q in tx.
func putISPSeq(tx *bolt.Tx, isp string, q ispSeq) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+16*len(q.gaps)), q.last)
	return tx.Bucket(bucketEventISPSeq).Put([]byte(isp), appendGaps(v, q.gaps))
}

// takeISPSeq records in tx that isp's event got ISPSeq n (0: the next
// number, which it returns). An n not past the ISP's last is an error, as
// a journal record's Seq not past the log's newest is. With held non-nil
// the sequence is kept there, not written (putISPSeqs writes it).
func takeISPSeq(tx *bolt.Tx, isp string, n uint64, held ispSeqs) (uint64, error) {
	q, ok := held[isp]
	if !ok {
		q = readISPSeq(tx, isp)
	}
	if n == 0 {
		n = q.last + 1
	}
	if n <= q.last {
		return 0, fmt.Errorf("event of %q numbered %d is not after the ISP's newest, %d", isp, n, q.last)
	}
	q.last = n
	if held != nil {
		held[isp] = q
		return n, nil
	}
	return n, putISPSeq(tx, isp, q)
}

// ispSeqs holds the sequences of the ISPs whose events a checkpoint
// applies (applyRecords), written once at its end: written at each event,
// each record cost a read and a rewrite of its ISP's entry (bench:
// BenchmarkBgCheckpoint).
type ispSeqs map[string]ispSeq

// putISPSeqs writes the sequences held in tx.
func putISPSeqs(tx *bolt.Tx, held ispSeqs) error {
	for isp, q := range held {
		if err := putISPSeq(tx, isp, q); err != nil {
			return err
		}
	}
	return nil
}

// gapOldestOf is gapOldest for a sequence with gaps (the log's, an ISP's).
func gapOldestOf(gaps []seqGap, oldest uint64) uint64 {
	for i := len(gaps) - 1; i >= 0; i-- {
		if g := gaps[i]; oldest == g.Newest+g.Jump+1 {
			oldest = g.Newest + 1
		}
	}
	return oldest
}

// indexSeq returns the Seq of the events-by-isp entry k, v whose prefix
// (ISP, 0x00) is plen bytes: its value, or, for an entry of a store of
// schema 8 or older (no value), its ISPSeq. ok is false for a malformed
// entry.
func indexSeq(k, v []byte, plen int) (ispSeq, seq uint64, ok bool) {
	if len(k) != plen+8 || (len(v) != 0 && len(v) != 8) {
		return 0, 0, false
	}
	ispSeq = binary.BigEndian.Uint64(k[plen:])
	if len(v) == 0 {
		return ispSeq, ispSeq, true
	}
	return ispSeq, binary.BigEndian.Uint64(v), true
}

// trimIndex removes from isp's index entries those of events up to Seq
// seq (the log trims its oldest events first, so they are the ISP's
// first ones: the trimmed event's, and any left by an event that no
// longer decoded). A malformed entry is left (eventsOfTx reports it).
// at holds, per ISP, the key this transaction's trim last deleted: the
// walk starts there, not at the ISP's first key, since bbolt rebalances
// only at commit and a Seek to the prefix would walk every leaf this
// trim emptied (trimming n events in one write: O(n²), as trimEvents
// says of First).
func trimIndex(idx *bolt.Bucket, isp string, seq uint64, at map[string][]byte) error {
	prefix := append([]byte(isp), 0)
	from := prefix
	if k, ok := at[isp]; ok {
		from = k
	}
	c := idx.Cursor()
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); {
		_, s, ok := indexSeq(k, v, len(prefix))
		if !ok {
			k, v = c.Next()
			continue
		}
		if s > seq {
			return nil
		}
		del := append(at[isp][:0], k...)
		at[isp] = del
		if err := c.Delete(); err != nil {
			return err
		}
		k, v = c.Seek(del) // never Next after Delete (see eventAt)
	}
	return nil
}

// ispBoundsTx is eventBoundsPending for isp's sequence: the ISPSeq of
// its oldest event the log holds (newest+1: none) and the last ISPSeq
// given out, as its readers see them (gapOldestOf).
//
// While that oldest event is one of a store of schema 8 or older (an
// index entry with no value), the oldest is the log's, logOldest (the
// Seq of its oldest event, as readers see it), as it was before schema
// 9: the ISP's old numbers are Seqs, with holes (the other ISPs' events)
// that no gap records, so a reader whose place is in one, such as a
// webhook cursor that had moved past the other ISPs' events, was told
// that the numbers from there to the ISP's oldest event were its events
// trimmed. The log keeps no trace of which ISP's events it trimmed: a
// number before the log's oldest may have been one of isp's.
func ispBoundsTx(tx *bolt.Tx, pend []*jrec, isp string, logOldest uint64) (oldest, newest uint64) {
	q := readISPSeq(tx, isp)
	newest = q.last
	var pendOldest uint64
	for _, r := range pend {
		if _, risp, _ := r.event(); risp == isp {
			if pendOldest == 0 {
				pendOldest = r.ispSeq()
			}
			newest = max(newest, r.ispSeq())
		}
	}
	oldest = newest + 1
	prefix := append([]byte(isp), 0)
	c := tx.Bucket(bucketEventIndex).Cursor()
	found := false
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if n, _, ok := indexSeq(k, v, len(prefix)); ok {
			oldest, found = n, true
			if len(v) == 0 { // an entry of schema 8 or older: see above
				oldest = min(n, logOldest)
			}
			break
		}
	}
	if !found && pendOldest != 0 {
		oldest = pendOldest
	}
	return gapOldestOf(q.gaps, oldest), newest
}

// loadISPSeqs returns the last ISPSeq of every ISP with an entry, and the
// base (that of the others).
func loadISPSeqs(tx *bolt.Tx) (map[string]uint64, uint64) {
	m := map[string]uint64{}
	tx.Bucket(bucketEventISPSeq).ForEach(func(k, v []byte) error {
		m[string(k)] = decodeISPSeq(tx, v).last
		return nil
	})
	return m, ispBase(tx)
}

// setISPSeqs makes the in-memory last ISPSeqs (ispLast) those of m and
// base, where they are larger.
func (s *Store) setISPSeqs(m map[string]uint64, base uint64) {
	s.ispMu.Lock()
	defer s.ispMu.Unlock()
	if s.ispLast == nil {
		s.ispLast = map[string]uint64{}
	}
	for isp, n := range m {
		s.ispLast[isp] = max(s.ispLast[isp], n)
	}
	s.ispBase = max(s.ispBase, base)
}

// lastISPSeq returns the last ISPSeq given out to isp (in the journal or
// in bbolt).
func (s *Store) lastISPSeq(isp string) uint64 {
	s.ispMu.Lock()
	defer s.ispMu.Unlock()
	if n, ok := s.ispLast[isp]; ok {
		return n
	}
	return s.ispBase
}

// reloadISPSeqs sets the in-memory last ISPSeqs from bbolt (Open, and
// the benchmarks' DB.Batch writes).
func (s *Store) reloadISPSeqs() error {
	return s.view(func(tx *bolt.Tx) error {
		s.setISPSeqs(loadISPSeqs(tx))
		return nil
	})
}

// LastEventSeqOf returns the ISPSeq of isp's newest event ever added (0
// if none), for a reader of isp's events that wants to start following
// from now (a new webhook's cursor). In memory, as LastEventSeq.
func (s *Store) LastEventSeqOf(isp string) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0, fmt.Errorf("last event seq of %q: %w", isp, ErrClosed)
	}
	return s.lastISPSeq(isp), nil
}

// WaitEventsOf is WaitEvents for a reader of isp's events, after an
// ISPSeq: it returns nil as soon as isp has an event numbered past after.
// Other ISPs' events wake it, and it waits again.
func (s *Store) WaitEventsOf(ctx context.Context, isp string, after uint64) error {
	for {
		woken := s.waitChannel(wakeEvents)
		n, err := s.LastEventSeqOf(isp)
		if err != nil {
			return err
		}
		if n > after {
			return nil
		}
		select {
		case <-woken:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// jumpISPSeqs moves every ISP's sequence, and the base, ahead by jump in
// tx, each with a gap (openedCopy: a restored copy).
func jumpISPSeqs(tx *bolt.Tx, jump uint64) error {
	bk := tx.Bucket(bucketEventISPSeq)
	seqs := map[string]ispSeq{}
	if err := bk.ForEach(func(k, v []byte) error {
		seqs[string(k)] = decodeISPSeq(tx, v)
		return nil
	}); err != nil {
		return err
	}
	for isp, q := range seqs {
		q.gaps = append(q.gaps, seqGap{q.last, jump})
		q.last += jump
		if err := putISPSeq(tx, isp, q); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyEventISPBase, binary.BigEndian.AppendUint64(nil, ispBase(tx)+jump))
}

// startISPSeqsAfterReplay is startISPSeqs once the binding journal's
// records are replayed, if the 8 → 9 migration left it for then
// (keyEventISPStart), in tx: the base is then past the replayed events.
func startISPSeqsAfterReplay(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyEventISPStart) == nil {
		return nil
	}
	if err := startISPSeqs(tx); err != nil {
		return err
	}
	return meta.Delete(keyEventISPStart)
}

// startISPSeqs is the 8 → 9 migration step: the base is the log's newest
// Seq, and every ISP with an event in the log starts there, with a gap
// from its newest event; the floor is the number before the log's oldest
// event (as its readers saw it: gapOldestOf).
func startISPSeqs(tx *bolt.Tx) error {
	base := tx.Bucket(bucketEvents).Sequence()
	if base == 0 {
		return nil
	}
	oldest, _ := eventBoundsTx(tx)
	floor := gapOldestOf(readGaps(tx), oldest) - 1
	if err := tx.Bucket(bucketMeta).Put(keyEventISPFloor, binary.BigEndian.AppendUint64(nil, floor)); err != nil {
		return err
	}
	last := map[string]uint64{}
	err := tx.Bucket(bucketEventIndex).ForEach(func(k, _ []byte) error {
		if i := bytes.IndexByte(k, 0); i >= 0 && len(k) == i+9 {
			isp := string(k[:i])
			last[isp] = max(last[isp], binary.BigEndian.Uint64(k[i+1:]))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for isp, n := range last {
		q := ispSeq{last: base}
		if n < base {
			q.gaps = []seqGap{{n, base - n}}
		}
		if err := putISPSeq(tx, isp, q); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyEventISPBase, binary.BigEndian.AppendUint64(nil, base))
}

// ispSeqsTx sets the ISPSeq of the events of evs (a page of the whole
// log, ascending by Seq, read in tx) that have an ISP, from the
// events-by-isp index, for the operator's view (EventsPage with no ISP):
// the number the event's ISP knows it by. An ISP's index is in ISPSeq
// order and so in Seq order (both are given out together), so a binary
// search finds the entry of the ISP's first event in the page (O(log Seq)
// Seeks: an ISPSeq is at most its Seq), and one walk forward the others.
// An event whose entry is not found (damaged index) keeps 0.
func ispSeqsTx(tx *bolt.Tx, evs []Event) {
	done := map[string]bool{}
	for i := range evs {
		isp := evs[i].ISP
		if isp == "" || done[isp] || evs[i].ISPSeq != 0 {
			continue
		}
		done[isp] = true
		prefix := append([]byte(isp), 0)
		c := tx.Bucket(bucketEventIndex).Cursor()
		k, v := seekIndexSeq(c, prefix, evs[i].Seq)
		for j := i; j < len(evs) && k != nil; j++ {
			if evs[j].ISP != isp {
				continue
			}
			for k != nil {
				n, seq, ok := indexSeq(k, v, len(prefix))
				if ok && seq >= evs[j].Seq {
					if seq == evs[j].Seq {
						evs[j].ISPSeq = n
					}
					break
				}
				if k, v = c.Next(); k != nil && !bytes.HasPrefix(k, prefix) {
					k = nil
				}
			}
		}
	}
}

// seekIndexSeq positions c at the first well-formed entry of the ISP's
// index (prefix: ISP, 0x00) whose event's Seq is seq or later, and
// returns it (nil: none).
func seekIndexSeq(c *bolt.Cursor, prefix []byte, seq uint64) (k, v []byte) {
	// at returns the Seq of the first well-formed entry from ISPSeq n on
	// (none: the largest Seq).
	at := func(n uint64) uint64 {
		for k, v := c.Seek(eventIndexKey(string(prefix[:len(prefix)-1]), n)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if _, s, ok := indexSeq(k, v, len(prefix)); ok {
				return s
			}
		}
		return ^uint64(0)
	}
	lo, hi := uint64(1), seq // the ISPSeq sought is in [lo, hi], or there is none
	for lo < hi {
		if mid := lo + (hi-lo)/2; at(mid) >= seq {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	for k, v = c.Seek(eventIndexKey(string(prefix[:len(prefix)-1]), lo)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if _, s, ok := indexSeq(k, v, len(prefix)); ok && s >= seq {
			return k, v
		}
	}
	return nil, nil
}

// pendingISPSeqs sets the ISPSeq of evs, pending journal records' events
// (of pend) of a page of the whole log, as the leader gave them out. Both
// are in Seq order.
func pendingISPSeqs(evs []Event, pend []*jrec) {
	for i := range evs {
		for len(pend) > 0 {
			seq, _, _ := pend[0].event()
			if seq > evs[i].Seq {
				break
			}
			if seq == evs[i].Seq {
				evs[i].ISPSeq = pend[0].ispSeq()
			}
			pend = pend[1:]
		}
	}
}
