package subscribers

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// windowBatch is the batch below which a busy leader waits a commit
// window (Options.CommitWindow) for more writes.
const windowBatch = 8

// call is one write waiting in the group commit queue.
type call struct {
	fn func(*bolt.Tx) error
	// rec, if set, is the write as a journal record (CommitBinding,
	// CommitBindingEvent): the leader appends it to the binding journal,
	// or runs fn when the journal cannot take it.
	rec *jrec
	// ckpt marks a checkpoint request (fn does nothing): the leader runs
	// a transaction only if records are pending.
	ckpt bool
	// lead, if set, is run by the leader, with no transaction (fn is
	// nil): a background checkpoint's steps that change the leader's
	// state.
	lead func()
	// own marks a write to none of the buckets the binding journal writes
	// (bindings, events, events-by-isp): a batch of only such writes
	// commits without checkpointing the journal (updateOwn).
	own bool
	err error
	// wakes says whom fn's commit wakes: wakeChanges (fn appends to the
	// change feed: Watch), wakeEvents (fn appends events: WaitEvents).
	wakes uint8
	// wake receives false when err is final, or true when the previous
	// leader hands this waiter the leadership instead. Buffered (1): the
	// sender never blocks, and a leader's own final send is never read.
	wake chan bool
}

// update runs fn in a durable write transaction, grouped with the
// concurrent writes (see the package doc), and returns once that
// transaction is committed and fsynced. fn must be idempotent: it may run
// more than once, in different transactions, and only the last run counts.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.updateWaking(fn, 0)
}

// updateOwn is update for a fn that reads and writes none of the buckets
// the binding journal writes (bindings, events, events-by-isp): when its
// batch holds only such writes, the transaction does not checkpoint the
// journal's pending records (a webhook cursor, written ten times a second
// beside the DHCP path's binding commits, would otherwise make each of
// its commits a checkpoint).
func (s *Store) updateOwn(fn func(*bolt.Tx) error) error {
	return s.submit(&call{fn: fn, own: true})
}

// updateWaking is update for a fn that appends to the change feed
// (wakes has wakeChanges) or the event log (wakeEvents): once it is
// committed, the readers waiting for those are woken (Watch, WaitEvents).
func (s *Store) updateWaking(fn func(*bolt.Tx) error, wakes uint8) error {
	return s.submit(&call{fn: fn, wakes: wakes})
}

// submit queues c for the group commit and returns its result once it
// is durable.
func (s *Store) submit(c *call) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	if b := s.broken.Load(); b != nil {
		// Journal records too: the store takes no more writes. Each
		// refused write is counted (CommitStats.WriteErrors), so the
		// alert on it stays up while the store is broken.
		s.writeErrors.Add(1)
		return b
	}
	if s.viaDBBatch {
		// Benchmarks only: no journal, so nothing is ever pending and
		// the listings need no s.bmu (snapshotView).
		err := s.db.Batch(c.fn)
		if err == nil {
			s.db.View(func(tx *bolt.Tx) error {
				seq := tx.Bucket(bucketEvents).Sequence()
				for old := s.evSeq.Load(); seq > old && !s.evSeq.CompareAndSwap(old, seq); old = s.evSeq.Load() {
				}
				s.setISPSeqs(loadISPSeqs(tx))
				return nil
			})
			s.wake(c.wakes)
		}
		return err
	}

	c.wake = make(chan bool, 1)
	s.gmu.Lock()
	s.queue = append(s.queue, c)
	if s.leading {
		// Follower: wait for a leader to commit us, or to hand over.
		s.gmu.Unlock()
		if lead := <-c.wake; !lead {
			return c.err
		}
		s.gmu.Lock()
	}
	// Leader: take what has queued up (at least c) and commit it.
	s.leading = true
	if s.window > 0 && s.lastBatch > 1 && len(s.queue) < windowBatch && time.Since(s.lastCommit) < s.window {
		// Busy with concurrent writers (the last commit, less than a
		// window ago, had more than one) and a small batch: wait one
		// window for more writes to share this commit's two fsyncs. A
		// lone writer's writes, one after the other, never wait.
		s.gmu.Unlock()
		s.windowWaits.Add(1)
		time.Sleep(s.window)
		s.gmu.Lock()
	}
	n := min(len(s.queue), s.maxBatch)
	batch := s.queue[:n:n]
	s.queue = append([]*call(nil), s.queue[n:]...)
	s.gmu.Unlock()

	leads := s.commitBatch(batch)

	// Hand over to the oldest waiter, which takes everything that queued
	// up during our fsync; or step down.
	s.gmu.Lock()
	s.lastCommit, s.lastBatch = time.Now(), n-leads
	if len(s.queue) > 0 {
		s.queue[0].wake <- true
	} else {
		s.leading = false
	}
	s.gmu.Unlock()
	return c.err
}

// commitBatch commits batch: its journal records by one append to the
// binding journal, the rest (and the records the journal cannot take) in
// one bbolt transaction, which also checkpoints every pending record.
// It returns the number of lead calls (no write) it ran. Preconditions
// as commitLocked's.
func (s *Store) commitBatch(batch []*call) (leads int) {
	// The leader's scratch slices, reused batch after batch.
	jcalls, tcalls := s.jcalls[:0], s.tcalls[:0]
	defer func() {
		clear(jcalls)
		clear(tcalls)
		s.jcalls, s.tcalls = jcalls[:0], tcalls[:0]
	}()
	for _, c := range batch {
		if c.lead != nil {
			c.lead()
			c.wake <- false
			leads++
			continue
		}
		if c.rec != nil && s.jr != nil && !s.jfailed && !s.noJournal {
			jcalls = append(jcalls, c)
		} else {
			tcalls = append(tcalls, c)
		}
	}
	if len(jcalls) > 0 {
		err := s.journalAppend(jcalls)
		if errors.Is(err, errJournalFull) {
			tcalls = append(tcalls, jcalls...)
		} else {
			var wakes uint8
			for _, c := range jcalls {
				wakes |= c.wakes
			}
			if err == nil {
				s.wake(wakes)
			}
			for _, c := range jcalls {
				c.err = err
				c.wake <- false
			}
		}
	}
	if len(tcalls) > 0 {
		if s.pendingN.Load() == 0 && !s.jfailed && onlyCheckpoints(tcalls) {
			for _, c := range tcalls {
				c.wake <- false
			}
		} else {
			s.commitLocked(tcalls)
		}
	}
	s.startCheckpoint()
	return leads
}

// onlyOwn reports whether every call of cs is an updateOwn write.
func onlyOwn(cs []*call) bool {
	for _, c := range cs {
		if !c.own {
			return false
		}
	}
	return true
}

// onlyCheckpoints reports whether every call of cs is a checkpoint
// request.
func onlyCheckpoints(cs []*call) bool {
	for _, c := range cs {
		if !c.ckpt {
			return false
		}
	}
	return true
}

// commitLocked runs batch in one transaction and releases its calls with
// the result. A call whose fn fails is taken out and re-run alone in its
// own transaction (its failure may have been caused by an earlier call of
// the batch), and the rest of the batch is retried without it, as bbolt's
// DB.Batch does.
//
// Preconditions: s.mu held for reading, s.leading set by this goroutine.
func (s *Store) commitLocked(batch []*call) {
	for len(batch) > 0 {
		failed := -1
		s.writeTxs.Add(1)
		s.writes.Add(uint64(len(batch)))
		err := s.commitTx(onlyOwn(batch), func(tx *bolt.Tx) error {
			for i, c := range batch {
				if err := c.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			if err == nil {
				var wakes uint8
				for _, c := range batch {
					wakes |= c.wakes
				}
				s.wake(wakes)
			}
			if failedWrite(err) {
				s.writeErrors.Add(uint64(len(batch)))
			}
			for _, c := range batch {
				c.err = err
				c.wake <- false
			}
			return
		}
		c := batch[failed]
		batch = append(batch[:failed:failed], batch[failed+1:]...)
		s.writeTxs.Add(1)
		s.writes.Add(1)
		c.err = s.commitTx(c.own, c.fn)
		if c.err == nil {
			s.wake(c.wakes)
		} else if failedWrite(c.err) {
			s.writeErrors.Add(1)
		}
		c.wake <- false
	}
}

// commitTx runs fn in one write transaction, timed for CommitStats: a
// checkpoint (checkpointTx, then checkpointed once committed) unless own
// (fn touches none of the journal's buckets: updateOwn).
func (s *Store) commitTx(own bool, fn func(*bolt.Tx) error) error {
	if own {
		return s.timedUpdate(fn)
	}
	// Held until the pending records are dropped too (snapshotView).
	s.bmu.Lock()
	defer s.bmu.Unlock()
	err := s.timedUpdate(s.checkpointTx(fn))
	if err == nil {
		if testHookCommitted != nil {
			testHookCommitted()
		}
		s.checkpointed()
	}
	return err
}

// timedUpdate runs fn in one write transaction, timed for CommitStats.
func (s *Store) timedUpdate(fn func(*bolt.Tx) error) error {
	start := time.Now()
	err := s.boltUpdate(fn)
	s.commitTime.Since(start)
	return err
}

// testHookCommitted (nil in production) is called by commitTx after a
// checkpointing transaction committed, before its records stop being
// pending (s.bmu still held).
var testHookCommitted func()

// failedWrite reports whether err, a write's, is the store failing it (a
// full disk, an I/O error, a damaged file) rather than the write refusing
// its own change (ErrInvalid, ErrNotFound): CommitStats.WriteErrors.
func failedWrite(err error) bool {
	return err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound)
}
