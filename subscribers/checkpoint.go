package subscribers

import (
	"encoding/binary"
	"fmt"
	"maps"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
)

// The store's side of the binding journal (journal.go): appending the
// group commit's records, checkpointing them into bbolt, replay at open.
// Every function here but openJournalFor and closeJournal runs in the
// group commit's leader, which serialises them.

// journalAppend assigns the calls' records their LSNs and event sequence
// numbers and appends them to the journal. On success they are pending:
// durable, not yet in bbolt. On errJournalFull nothing was written and
// the journal's counters did not move (the records' LSNs and the events'
// Seq were assigned, and are assigned again by the bbolt transaction the
// calls go to). On another error (the write or the fdatasync failed) the
// journal may hold some of the records: their LSNs are burnt (the next
// checkpoint records them as applied, so replay skips them) and the
// journal is left alone until that checkpoint.
func (s *Store) journalAppend(cs []*call) error {
	recs := make([]*jrec, len(cs))
	lsn, seq := s.jr.lsn, s.evSeq.Load()
	for i, c := range cs {
		lsn++
		c.rec.lsn = lsn
		if c.rec.ev != nil {
			seq++
			c.rec.ev.Seq = seq
		}
		recs[i] = c.rec
	}
	start := time.Now()
	err := s.jr.append(recs)
	if err == errJournalFull {
		return err
	}
	s.commitTime.Since(start)
	s.writeTxs.Add(1) // one durable write, as a transaction would be
	s.writes.Add(uint64(len(cs)))
	s.jr.lsn = lsn
	if err != nil {
		s.jfailed = true
		return fmt.Errorf("binding journal: %w", err)
	}
	s.pending = append(s.pending, recs...)
	s.pmu.Lock()
	for _, r := range recs {
		s.pendingB[string(r.key)] = r.val
	}
	s.pendingN.Store(int64(len(s.pending)))
	s.pmu.Unlock()
	s.evSeq.Store(seq)
	return nil
}

// applyPending writes the pending journal records into tx (a checkpoint)
// and, when the journal handed out LSNs since the last checkpoint, the
// last of them. It may run in several transactions of which only the
// last commits: it only reads s.pending.
func (s *Store) applyPending(tx *bolt.Tx) error {
	if s.jr == nil || s.jr.lsn == s.appliedLSN {
		return nil
	}
	if err := s.applyRecords(tx, s.pending); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyJournalLSN, binary.BigEndian.AppendUint64(nil, s.jr.lsn))
}

// applyRecords puts each record's binding and appends its event (with the
// sequence number it was given), in order.
func (s *Store) applyRecords(tx *bolt.Tx, recs []*jrec) error {
	bk := tx.Bucket(bucketBindings)
	evs := tx.Bucket(bucketEvents)
	for _, r := range recs {
		if err := bk.Put(r.key, r.val); err != nil {
			return err
		}
		seq, isp, t := r.event()
		if seq == 0 {
			continue
		}
		if seq <= evs.Sequence() {
			return fmt.Errorf("journal record %d: event %d is not after the log's newest, %d", r.lsn, seq, evs.Sequence())
		}
		if err := evs.SetSequence(seq); err != nil {
			return err
		}
		if err := s.eventAt(tx, seq, r.evVal, isp, t.Add(-s.maxAge)); err != nil {
			return err
		}
	}
	return nil
}

// checkpointTx returns fn (nil: nothing more) as a write transaction of
// the store: the pending journal records first (applyPending), then fn,
// then the event log's sequence noted for checkpointed (txEvSeq).
func (s *Store) checkpointTx(fn func(*bolt.Tx) error) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		if err := s.applyPending(tx); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		s.txEvSeq = tx.Bucket(bucketEvents).Sequence()
		return nil
	}
}

// checkpointed is called after a checkpointTx transaction committed: the pending records are in
// bbolt, so the journal starts a new generation.
func (s *Store) checkpointed() {
	s.evSeq.Store(s.txEvSeq)
	if s.jr == nil || s.jr.lsn == s.appliedLSN {
		return
	}
	failpoint.Hit(failpoint.CheckpointAfterCommit)
	s.appliedLSN = s.jr.lsn
	s.pending = s.pending[:0]
	s.pmu.Lock()
	clear(s.pendingB)
	s.pendingN.Store(0)
	s.pmu.Unlock()
	s.jr.reset()
	s.jfailed = false
}

// checkpoint writes the pending journal records into bbolt (through the
// group commit), if there are any.
func (s *Store) checkpoint() error {
	if s.pendingN.Load() == 0 {
		return nil
	}
	return s.submit(&call{fn: func(*bolt.Tx) error { return nil }, ckpt: true})
}

// pendingBinding returns the journaled value of the binding under key,
// if it is pending (newer than bbolt's).
func (s *Store) pendingBinding(key []byte) ([]byte, bool) {
	if s.pendingN.Load() == 0 {
		return nil, false
	}
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	v, ok := s.pendingB[string(key)]
	return v, ok
}

// openJournalFor opens the journal of the store file path, replays into
// db the records it holds past the last checkpoint (one transaction), and
// sets s's journal state. A journal whose records start after the
// checkpoint's LSN + 1 (records lost: not this file's journal, or a file
// restored from a backup under a journal of later writes) is refused.
func (s *Store) openJournalFor(path string, noSync bool) error {
	jr, recs, err := openJournal(path+".journal", noSync)
	if err != nil {
		return err
	}
	var applied uint64
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyJournalLSN); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		s.evSeq.Store(tx.Bucket(bucketEvents).Sequence())
		return nil
	})
	if err != nil {
		jr.close()
		return err
	}
	var replay []*jrec
	for i := range recs {
		if recs[i].lsn > applied {
			replay = append(replay, &recs[i])
		}
	}
	if len(replay) > 0 && replay[0].lsn != applied+1 {
		jr.close()
		return &CorruptError{Bucket: "journal", Key: []byte(jr.path), Err: fmt.Errorf("its records start at LSN %d but the store holds them up to %d (a journal not written after this file: restored from a backup? remove %s to discard it)", replay[0].lsn, applied, jr.path)}
	}
	jr.lsn = applied
	s.jr, s.appliedLSN = jr, applied
	if len(replay) > 0 {
		// The replayed records are pending, checkpointed at once.
		jr.lsn, s.pending = replay[len(replay)-1].lsn, replay
		if err := s.db.Update(s.checkpointTx(nil)); err != nil {
			jr.close()
			s.jr, s.pending = nil, nil
			return fmt.Errorf("replay journal %s: %w", jr.path, err)
		}
		s.evSeq.Store(s.txEvSeq)
		s.appliedLSN, s.pending = jr.lsn, nil
	}
	s.pendingB = map[string][]byte{}
	return nil
}

// closeJournal checkpoints the pending records and empties the journal
// (Close: no operation in flight, no leader).
func (s *Store) closeJournal() error {
	if s.jr == nil {
		return nil
	}
	var err error
	if s.jr.lsn != s.appliedLSN {
		err = s.db.Update(s.checkpointTx(nil))
		if err == nil {
			s.checkpointed()
		}
	}
	if err == nil {
		err = s.jr.invalidate()
	}
	if cerr := s.jr.close(); err == nil {
		err = cerr
	}
	s.jr = nil
	// Whatever happened, the store is closed: Binding must not answer
	// from the pending records (they are in the journal, replayed at
	// the next Open if the checkpoint failed).
	s.pending = nil
	s.pmu.Lock()
	clear(s.pendingB)
	s.pendingN.Store(0)
	s.pmu.Unlock()
	return err
}

// pendingBindings returns a copy of the pending bindings (tests).
func (s *Store) pendingBindings() map[string][]byte {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	return maps.Clone(s.pendingB)
}
