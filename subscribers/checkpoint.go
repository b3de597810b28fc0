package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
)

// The store's side of the binding journal (journal.go): appending the
// group commit's records, checkpointing them into bbolt, replay at open.
// Every function here but openJournalFor and closeJournal runs in the
// group commit's leader, which serialises them.

// journalAppend assigns the calls' records their LSNs and event sequence
// numbers (Seq and ISPSeq) and appends them to the journal. On success they are pending:
// durable, not yet in bbolt. On errJournalFull nothing was written and
// the journal's counters did not move (the records' LSNs and the events'
// Seq were assigned, and are assigned again by the bbolt transaction the
// calls go to). On another error (the write or the fdatasync failed) the
// journal may hold some of the records: their LSNs are burnt (the next
// checkpoint records them as applied, so replay skips them) and the
// journal is left alone until that checkpoint.
func (s *Store) journalAppend(cs []*call) error {
	recs := slices.Grow(s.jrecs[:0], len(cs))[:len(cs)]
	defer func() { clear(recs); s.jrecs = recs[:0] }()
	lsn, seq := s.jr.lsn, s.evSeq.Load()
	isps := s.jISP // the ISPs' last ISPSeqs, as this append gives them out
	clear(isps)
	for i, c := range cs {
		lsn++
		c.rec.lsn = lsn
		if ev := c.rec.ev; ev != nil {
			seq++
			ev.Seq = seq
			if ev.ISP != "" {
				n, ok := isps[ev.ISP]
				if !ok {
					n = s.lastISPSeq(ev.ISP)
				}
				ev.ISPSeq = n + 1
				isps[ev.ISP] = n + 1
			}
		}
		recs[i] = c.rec
	}
	start := time.Now()
	hadRing := s.jr.ring != nil
	err := s.jr.append(recs)
	if hadRing && s.jr.ring == nil {
		s.noteJournalSync() // dropped: fdatasync from now on
	}
	if err == errJournalFull {
		return err
	}
	s.commitTime.Since(start)
	s.writeTxs.Add(1) // one durable write, as a transaction would be
	s.writes.Add(uint64(len(cs)))
	s.jr.lsn = lsn
	if err != nil {
		s.jfailed = true
		s.writeErrors.Add(uint64(len(cs)))
		return fmt.Errorf("binding journal: %w", err)
	}
	s.pending = append(s.pending, recs...)
	s.pmu.Lock()
	for _, r := range recs {
		s.pendingB[string(r.key)] = pendingVal{r.val, r.lsn}
		if r.ev != nil {
			s.pendingEv = append(s.pendingEv, r)
		}
	}
	s.pendingN.Store(int64(len(s.pending)))
	s.pmu.Unlock()
	s.evSeq.Store(seq)
	s.setISPSeqs(isps, 0)
	return nil
}

// applyPending writes into tx (a checkpoint) the pending journal records
// past the LSN the file holds (a background checkpoint may have written
// the first of them already) and, when the journal handed out LSNs since,
// the last of them. It may run in several transactions of which only the
// last commits: it only reads s.pending.
func (s *Store) applyPending(tx *bolt.Tx) error {
	if s.jr == nil || s.jr.lsn == s.appliedLSN {
		return nil
	}
	stored := storedLSN(tx)
	recs := s.pending
	for len(recs) > 0 && recs[0].lsn <= stored {
		recs = recs[1:]
	}
	if err := s.applyRecords(tx, recs, false); err != nil {
		return err
	}
	if s.jr.lsn <= stored {
		return nil
	}
	return putStoredLSN(tx, s.jr.lsn)
}

// storedLSN returns the last journal LSN tx's file holds (meta
// journal-lsn).
func storedLSN(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyJournalLSN); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// putStoredLSN records in tx that the file holds the journal's records up
// to lsn.
func putStoredLSN(tx *bolt.Tx, lsn uint64) error {
	return tx.Bucket(bucketMeta).Put(keyJournalLSN, binary.BigEndian.AppendUint64(nil, lsn))
}

// applyRecords puts each record's binding and appends its event (with the
// sequence number it was given), in order, yielding its P every
// checkpointYield records; with pause, every fourth yield is a pause.
// The sequences of the events' ISPs are written once, at the end
// (ispSeqs).
//
// A background checkpoint of 4096 records is 25–60 ms of CPU, most of it
// in these Puts (BenchmarkBgCheckpoint): with one P (ispmux on one CPU)
// it would hold the DHCP path back by the scheduler's 10 ms preemption
// slices. A Gosched lets the goroutines readied through channels run
// (the control plane); a pause (bgPause: parked on a timer) also lets the
// P poll the netpoller, where the parked datapath worker and the
// journal's fsync completion wait (the runtime takes a Gosched's yielder
// back from its run queue before it looks at the network). Only the
// background checkpoint pauses: a pause may cost up to a millisecond
// (below), and the group commit's bbolt transactions wait for it.
// bbolt's commit that follows (spill, page writes) cannot yield.
func (s *Store) applyRecords(tx *bolt.Tx, recs []*jrec, pause bool) error {
	bk := tx.Bucket(bucketBindings)
	evs := tx.Bucket(bucketEvents)
	held := ispSeqs{}
	for i, r := range recs {
		if i%checkpointYield == checkpointYield-1 {
			if pause && i%(4*checkpointYield) == 4*checkpointYield-1 {
				bgPause()
			} else {
				runtime.Gosched()
			}
		}
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
		if _, err := s.eventAt(tx, seq, r.evVal, isp, r.ispSeq(), t.Add(-s.maxAge), held); err != nil {
			return fmt.Errorf("journal record %d: %w", r.lsn, err)
		}
	}
	return putISPSeqs(tx, held)
}

// checkpointYield is how many records applyRecords writes between yields
// of its P (~0.1–0.6 ms of work).
const checkpointYield = 64

// bgPause is a background checkpoint's pause: a sleep as short as the
// runtime's timers allow when nothing else is ready (up to ~1 ms: the
// netpoller's wait has millisecond resolution), so 4096 records take up
// to ~16 ms longer, in the background; the netpoller waits at most 256
// records (~1.5–2.5 ms) for a look.
func bgPause() { time.Sleep(20 * time.Microsecond) }

// checkpointTx returns fn (nil: nothing more) as a write transaction of
// the store: the pending journal records first (applyPending), then fn,
// then the event log's sequence noted for checkpointed (txEvSeq, and the
// ISPs' in txISP).
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
		s.txISP, s.txISPBase = nil, 0
		if s.txEvSeq != s.evSeq.Load() {
			// Events were written: the ISPs' sequences moved too.
			s.txISP, s.txISPBase = loadISPSeqs(tx)
		}
		return nil
	}
}

// checkpointed is called after a checkpointTx transaction committed: the pending records are in
// bbolt, so the journal starts a new generation.
func (s *Store) checkpointed() {
	s.evSeq.Store(s.txEvSeq)
	if s.txISP != nil {
		s.setISPSeqs(s.txISP, s.txISPBase)
	}
	if s.jr == nil || s.jr.lsn == s.appliedLSN {
		return
	}
	failpoint.Hit(failpoint.CheckpointAfterCommit)
	s.appliedLSN = s.jr.lsn
	s.pending = s.pending[:0]
	s.pmu.Lock()
	clear(s.pendingB)
	clear(s.pendingEv)
	s.pendingEv = s.pendingEv[:0]
	s.pendingN.Store(0)
	s.pmu.Unlock()
	s.jr.reset()
	s.jfailed = false
}

// checkpoint writes the pending journal records into bbolt (through the
// group commit: appends wait for it), if there are any.
func (s *Store) checkpoint() error {
	if s.pendingN.Load() == 0 {
		return nil
	}
	return s.submit(&call{fn: func(*bolt.Tx) error { return nil }, ckpt: true})
}

// startCheckpoint starts a background checkpoint once journalMaxPending
// records are pending and none is running. Leader only.
//
// The journal swaps files: the records pending now (all in the current
// file, as the other file's records are all checkpointed) are written
// into bbolt by a transaction of their own, outside the group commit,
// while appends go on in the other file; only the group commit's own
// bbolt transactions wait for it (bbolt has one writer at a time). If
// the other file is not free (the last background checkpoint failed) or
// an append failed (jfailed), the checkpoint goes through the group
// commit instead, as Backup's does.
func (s *Store) startCheckpoint() {
	if s.ckptRunning || s.jr == nil || len(s.pending) == 0 || len(s.pending) < journalMaxPending {
		return
	}
	s.ckptRunning = true
	if s.jfailed || s.appliedLSN < s.swappedUpTo || s.ckptInLeader {
		go func() {
			s.checkpoint()
			s.submit(&call{lead: func() { s.ckptRunning = false }})
		}()
		return
	}
	snap := slices.Clone(s.pending)
	upTo := snap[len(snap)-1].lsn // s.jr.lsn: no LSN is burnt (!jfailed)
	s.jr.swap()
	s.swappedUpTo = upTo
	go func() {
		err := s.checkpointRecords(snap)
		// Back in the leader: the records stop being pending.
		s.submit(&call{lead: func() { s.checkpointedUpTo(upTo, err == nil) }})
	}()
}

// Test hooks (nil in production): called by a background checkpoint
// before its transaction, and after it committed (or found its records
// checkpointed already), before they stop being pending; both with s.mu
// held for reading (a hook must not wait for Close).
var testHookCheckpoint, testHookCheckpointed func()

// testHookApplied (nil in production) is called by a background
// checkpoint once its records are in the transaction, before it commits.
var testHookApplied func()

// checkpointRecords writes recs (a background checkpoint's, in LSN
// order) into bbolt in one transaction with the last of their LSNs as the
// file's journal-lsn. If the file holds them already (a group commit
// transaction ran first and checkpointed everything), it rolls back.
func (s *Store) checkpointRecords(recs []*jrec) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	upTo := recs[len(recs)-1].lsn
	if testHookCheckpoint != nil {
		testHookCheckpoint()
	}
	failpoint.Hit(failpoint.BgCheckpointBeforeCommit)
	// Held across the transaction (snapshotView); the records stay
	// pending after it until the leader drops them, which is harmless:
	// the same values, or newer ones, in both. Deferred (a closure): a
	// panic must not leave every writer waiting.
	err := func() error {
		s.bmu.Lock()
		defer s.bmu.Unlock()
		return s.boltUpdate(func(tx *bolt.Tx) error {
			if storedLSN(tx) >= upTo {
				// A group commit transaction checkpointed them all first:
				// roll back, nothing to write (and no fsync).
				return errCheckpointed
			}
			// Every group commit transaction stores the last LSN handed out,
			// past upTo: the file holds none of recs.
			if err := s.applyRecords(tx, recs, true); err != nil {
				return err
			}
			if testHookApplied != nil {
				testHookApplied()
			}
			return putStoredLSN(tx, upTo)
		})
	}()
	if err == errCheckpointed {
		err = nil
	}
	if err == nil {
		failpoint.Hit(failpoint.BgCheckpointAfterCommit)
		s.bgCheckpoints.Add(1)
		if testHookCheckpointed != nil {
			testHookCheckpointed()
		}
	}
	return err
}

// errCheckpointed rolls back a background checkpoint whose records the
// file holds already.
var errCheckpointed = errors.New("checkpointed already")

// checkpointedUpTo ends a background checkpoint: if it committed, the
// pending records up to upTo are in bbolt and stop being pending (unless a
// group commit transaction checkpointed them all already). Leader only.
func (s *Store) checkpointedUpTo(upTo uint64, ok bool) {
	s.ckptRunning = false
	if !ok || s.jr == nil || upTo <= s.appliedLSN {
		return
	}
	s.appliedLSN = upTo
	s.pmu.Lock()
	for _, r := range s.pending {
		if r.lsn > upTo {
			break
		}
		if v, ok := s.pendingB[string(r.key)]; ok && v.lsn <= upTo {
			delete(s.pendingB, string(r.key))
		}
	}
	s.pending = dropThrough(s.pending, upTo)
	s.pendingEv = dropThrough(s.pendingEv, upTo)
	s.pendingN.Store(int64(len(s.pending)))
	s.pmu.Unlock()
}

// dropThrough removes from rs (in LSN order) the records with LSNs up to
// upTo, in place.
func dropThrough(rs []*jrec, upTo uint64) []*jrec {
	n := 0
	for n < len(rs) && rs[n].lsn <= upTo {
		n++
	}
	k := copy(rs, rs[n:])
	clear(rs[k:])
	return rs[:k]
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
	return v.val, ok
}

// openJournalFor opens the journal of the store file path, replays into
// db the records it holds past the last checkpoint (one transaction), and
// sets s's journal state. A store just migrated from schema 8
// (keyEventISPStart) has its journal's events indexed by their Seq
// (replayLegacy), then its ISPs' sequences started (startISPSeqs), in
// the replay's transaction. A journal whose records start after the
// checkpoint's LSN + 1 (records lost: not this file's journal, or a file
// restored from a backup under a journal of later writes) is refused.
func (s *Store) openJournalFor(path string, noSync bool) error {
	jr, runs, err := openJournal(path, noSync)
	if err != nil {
		return err
	}
	var applied uint64
	var legacy bool
	err = s.view(func(tx *bolt.Tx) error {
		applied = storedLSN(tx)
		s.evSeq.Store(tx.Bucket(bucketEvents).Sequence())
		legacy = tx.Bucket(bucketMeta).Get(keyEventISPStart) != nil
		return nil
	})
	if err != nil {
		jr.close()
		return err
	}
	replay, err := mergeRuns(runs, applied)
	if err != nil {
		jr.close()
		return &CorruptError{Bucket: "journal", Key: []byte(jr.paths[0]), Err: fmt.Errorf("%w (remove %s and %s to discard it)", err, jr.paths[0], jr.paths[1])}
	}
	if s.created && len(replay) > 0 {
		// A store this Open created has written no record yet: these
		// are another store's, left beside a removed file (its
		// bindings, and its events numbered from 1 or its own base,
		// replayed into this one would resurrect them).
		jr.close()
		return ErrForeignJournal{Paths: jr.paths}
	}
	jr.lsn = applied
	s.jr, s.appliedLSN = jr, applied
	s.noteJournalSync()
	if len(replay) > 0 {
		// The replayed records are pending, checkpointed at once (with
		// the 8 → 9 migration's last step, if it waits for them:
		// keyEventISPStart).
		jr.lsn, s.pending = replay[len(replay)-1].lsn, replay
		s.replayLegacy, s.replaying = legacy, true
		err := s.boltUpdate(s.checkpointTx(startISPSeqsAfterReplay))
		s.replayLegacy, s.replaying = false, false
		if err != nil {
			jr.close()
			s.jr, s.pending = nil, nil
			return fmt.Errorf("replay journal %s: %w", jr.paths[0], err)
		}
		s.evSeq.Store(s.txEvSeq)
		s.appliedLSN, s.pending = jr.lsn, nil
	} else if legacy {
		if err := s.boltUpdate(startISPSeqsAfterReplay); err != nil {
			jr.close()
			s.jr = nil
			return fmt.Errorf("open journal %s: %w", jr.paths[0], err)
		}
	}
	if len(runs[0]) > 0 || len(runs[1]) > 0 {
		// Every record of both files is now in bbolt, or past the
		// replay's end (never to replay: after a hole or damage). Both
		// runs are made empty, durably, before the LSNs past the end
		// are handed out again: a run left in the other file must not
		// chain to the new ones after the next crash (found in
		// review: a damaged record between the files did that).
		if err := jr.invalidate(); err != nil {
			jr.close()
			s.jr = nil
			return fmt.Errorf("journal %s: %w", jr.paths[0], err)
		}
	}
	s.pendingB = map[string]pendingVal{}
	return nil
}

// closeJournal checkpoints the pending records and empties the journal
// (Close: no operation in flight, no leader). Neither is needed to keep
// what the journal holds, which the next Open replays: if either fails,
// it returns a *JournalKeptError saying so.
func (s *Store) closeJournal() error {
	if s.jr == nil {
		return nil
	}
	var err error
	if s.jr.lsn != s.appliedLSN {
		if cerr := s.boltUpdate(s.checkpointTx(nil)); cerr != nil {
			// The records stay in the journal, durable since their
			// append: the bbolt transaction needs pages of its own
			// (a full disk refuses them), the journal's blocks are
			// reserved.
			err = &JournalKeptError{Replay: true, Pending: len(s.pending), Err: fmt.Errorf("checkpoint: %w", cerr)}
		} else {
			s.checkpointed()
		}
	}
	if err == nil {
		// In the journal's reserved blocks: a full disk does not fail
		// it. Left undone, the next Open finds the records checkpointed
		// and skips them.
		if ierr := s.jr.invalidate(); ierr != nil {
			err = &JournalKeptError{Err: fmt.Errorf("empty the journal: %w", ierr)}
		}
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
	s.pendingEv = nil
	s.pendingN.Store(0)
	s.pmu.Unlock()
	return err
}

// JournalKeptError is Close's error when the store closed without its
// last checkpoint or without emptying the binding journal (a full disk,
// an I/O error): nothing is lost. Every binding commit that returned is
// in the store file or in the journal, durable since its append, and the
// next Open replays the journal's records into the file (it needs room
// to write them) or skips those the file holds. The journal's files must
// be kept until then.
type JournalKeptError struct {
	// Replay is set when the checkpoint failed: the next Open replays
	// the journal's records; otherwise only the emptying failed, and the
	// next Open skips them (the store file holds them).
	Replay bool
	// Pending is the number of the journal's records that writers were
	// told were committed and that are not known to be in the store file
	// (a background checkpoint may have written some of them: the replay
	// skips those).
	Pending int
	// Err is what failed.
	Err error
}

// Error says what failed and what the next start does.
func (e *JournalKeptError) Error() string {
	if !e.Replay {
		return fmt.Sprintf("binding journal not emptied (%v); nothing is lost: its records are in the store file, and the next start skips them", e.Err)
	}
	return fmt.Sprintf("%d binding journal records not written into the store file (%v); nothing is lost: they are in the journal, which the next start replays (keep its files)", e.Pending, e.Err)
}

// Unwrap returns Err (errors.Is(err, syscall.ENOSPC): the disk is full).
func (e *JournalKeptError) Unwrap() error { return e.Err }

// pendingBindings returns a copy of the pending bindings (tests).
func (s *Store) pendingBindings() map[string][]byte {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	m := make(map[string][]byte, len(s.pendingB))
	for k, v := range s.pendingB {
		m[k] = v.val
	}
	return m
}

// ErrForeignJournal is Open's refusal of a new store file beside journal
// files that hold records: they are another store's (its file removed or
// moved away, the journal left), never this one's, which has written none.
// Open removes the file it created, so that the next Open decides again.
type ErrForeignJournal struct {
	Paths [2]string
}

func (e ErrForeignJournal) Error() string {
	return fmt.Sprintf("no store file, but its journal holds records of another store's (its file removed, the journal left): "+
		"put that store's file back, or remove %s and %s to start empty", e.Paths[0], e.Paths[1])
}

// checkForeignJournal refuses, before any file is made, a store file that
// is not there beside journal files that hold records (ErrForeignJournal):
// a file created first and refused after (openJournalFor) would be left,
// by a crash before its removal, to take the journal at the next Open as
// its own. It reads the head of each journal file, no more.
func checkForeignJournal(path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return nil // there (or not known: Open says why)
	}
	paths := journalPaths(path)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue // none, or not readable: the journal's open says why
		}
		head := make([]byte, jrecHeader+jrecMaxBody)
		n, _ := io.ReadFull(f, head)
		f.Close()
		if _, _, ok := decodeRecord(head[:n]); ok {
			return ErrForeignJournal{Paths: paths}
		}
	}
	return nil
}
