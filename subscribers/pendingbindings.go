package subscribers

import (
	"bytes"
	"slices"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// The pending journal records' bindings, read without a checkpoint.
//
// A listing of bindings (BindingsPage: every page of the bindings API and
// of `ispmux ctl bindings`; Bindings, ForEachBinding: status and restore)
// used to checkpoint the journal first (viewJournaled): a bbolt commit
// through the group commit, which the DHCP path's ACKs wait for, per page.
// Paging through a million bindings put a thousand checkpoints in front of
// the ACKs. They read the pending records' values from memory instead,
// merged in key order with bbolt's: a journal record is always a put (a
// release or a deletion is a bbolt transaction, after a checkpoint), so a
// pending value replaces bbolt's for its key or adds a key bbolt lacks.

// pendKV is a pending binding: its key and value in the bindings bucket,
// both shared with the store's pending state and never written.
type pendKV struct{ k, v []byte }

// pendingCopy returns the pending bindings, in no order (taken under
// s.bmu: see snapshotView; sortPending sorts them after).
func (s *Store) pendingCopy() []pendKV {
	if s.pendingN.Load() == 0 {
		return nil
	}
	s.pmu.RLock()
	kvs := make([]pendKV, 0, len(s.pendingB))
	for k, v := range s.pendingB {
		// The map's key, not a copy: read only, as bbolt's keys are
		// (a copy per key made the walks allocate per pending record).
		kvs = append(kvs, pendKV{unsafe.Slice(unsafe.StringData(k), len(k)), v.val})
	}
	s.pmu.RUnlock()
	return kvs
}

// sortPending sorts a copy of the pending bindings in key order.
func sortPending(kvs []pendKV) {
	slices.SortFunc(kvs, func(a, b pendKV) int { return bytes.Compare(a.k, b.k) })
}

// snapshotView runs take, then fn in a read transaction begun with no
// bbolt write of the journal's buckets in between: take copies pending
// journal state, and the two together are the store at one instant.
//
// Without s.bmu a transaction could commit between them: a group commit
// transaction checkpoints the pending records, deletes binding K and
// (later) another puts Y and checkpoints; a listing whose pending copy
// was taken before the first and whose transaction began after the last
// showed K (from the copy) beside Y, a state that never was (found in
// review). A background checkpoint in between is no better: it puts
// values newer than the copy's, so a key written again after the copy
// showed its older value beside other keys' newer ones. The writers
// (commitTx, checkpointRecords) hold s.bmu across their transaction and
// the change to the pending state after it; the readers hold it for
// reading only across take (a copy of the pending records: up to
// journalMaxPending, or while a background checkpoint runs up to a full
// journal file's, ~28k; ~0.6 ms at 32k) and the transaction's begin, not
// while fn walks or sorts. The journal's appends (the ACKs' binding
// commits) never take s.bmu; a group commit transaction (a release, an
// onboarding lease, a checkpoint) may wait for a reader's copy and begin
// (~70 µs at 4096 records). A background checkpoint's transaction (tens
// of ms) holds back the listings and the event log's readers begun
// during it.
func (s *Store) snapshotView(take func(), fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	tx, err := func() (*bolt.Tx, error) {
		// Deferred: a panic in take must not leave every writer waiting.
		s.bmu.RLock()
		defer s.bmu.RUnlock()
		take()
		if testHookSnapshot != nil {
			testHookSnapshot()
		}
		return s.beginRead()
	}()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return guardRead(func() error { return fn(tx) })
}

// testHookSnapshot (nil in production) is called by snapshotView between
// take and the transaction's begin.
var testHookSnapshot func()

// viewBindings runs fn in a read transaction with a cursor over the
// bindings bucket merged with the pending bindings of the same instant.
func (s *Store) viewBindings(fn func(c *bindingCursor) error) error {
	var pend []pendKV
	return s.snapshotView(func() { pend = s.pendingCopy() }, func(tx *bolt.Tx) error {
		sortPending(pend) // after s.bmu is released: the copy is ours
		return fn(&bindingCursor{c: tx.Bucket(bucketBindings).Cursor(), pend: pend})
	})
}

// bindingCursor walks the bindings bucket and the pending bindings
// together, in key order; on a key both hold, the pending value. Its
// Seek and Next are bolt.Cursor's (pageScan takes either).
type bindingCursor struct {
	c      *bolt.Cursor
	pend   []pendKV
	i      int    // next pending entry
	bk, bv []byte // bbolt's current entry (bk nil: at the end)
}

// Seek moves to the first key at or after k.
func (m *bindingCursor) Seek(k []byte) ([]byte, []byte) {
	m.bk, m.bv = m.c.Seek(k)
	m.i, _ = slices.BinarySearchFunc(m.pend, k, func(p pendKV, k []byte) int { return bytes.Compare(p.k, k) })
	return m.cur()
}

// First moves to the first key.
func (m *bindingCursor) First() ([]byte, []byte) { return m.Seek(nil) }

// Next moves past the current key.
func (m *bindingCursor) Next() ([]byte, []byte) {
	k, _ := m.cur()
	if k == nil {
		return nil, nil
	}
	if m.bk != nil && bytes.Equal(m.bk, k) {
		m.bk, m.bv = m.c.Next()
	}
	if m.i < len(m.pend) && bytes.Equal(m.pend[m.i].k, k) {
		m.i++
	}
	return m.cur()
}

// cur is the smaller of the two current keys, the pending value on a tie.
func (m *bindingCursor) cur() ([]byte, []byte) {
	if m.i >= len(m.pend) {
		return m.bk, m.bv
	}
	p := m.pend[m.i]
	if m.bk != nil && bytes.Compare(m.bk, p.k) < 0 {
		return m.bk, m.bv
	}
	return p.k, p.v
}
