package subscribers

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// migrate brings a file of schema from up to schemaVersion, inside Open's
// transaction tx (whose buckets exist): either the whole migration and
// the new schema byte commit, or nothing does and the file stays as it
// was; the events-by-mac index alone is built after it (9 → 10, 10 →
// 11). It runs the steps from `from` on: 1 → 2, 2 → 3, 3 → 4, 4 → 5,
// 5 → 6, 6 → 7, 7 → 8, 8 → 9, 9 → 10, 10 → 11, 11 → 12.
//
// 1 → 2: every registration, binding and event is re-encoded in the
// current format (the fields added since read as empty); the keys and
// the event sequence are unchanged; the intents bucket is
// new (created by the caller). A value that does not decode is left as it
// is: it was already unreadable, and the readers keep reporting it as a
// CorruptError rather than the migration refusing the whole file.
//
// 3 → 4: nothing to rewrite: events of format 4 may carry a lease end
// (older values read without one). The schema byte moves so that an older
// ispmux, which cannot read format 4, refuses the file.
//
// 2 → 3: the customers and changes buckets are new (empty: the change
// feed starts at the migration; a follower starts by reading every
// record); the indexes devices-by-customer (from every registration) and
// events-by-isp (from every event with an ISP) are built. Values of format
// 2 stay as they are (they decode; Created, Actor, RequestID read as
// empty) until next written. Values that do not decode get no index entry.
//
// 4 → 5: nothing to rewrite: the onboarding bucket is new (created empty
// by the caller, like every bucket of the current schema). The schema byte
// moves so that an older ispmux, which would not see the onboarding leases
// (and would hand their addresses out again), refuses the file.
//
// 5 → 6: the binding-expiry bucket is deleted (its pages go to the
// freelist). The schema byte moves so that an older ispmux, which would
// write the index again for some bindings only, refuses the file.
//
// 6 → 7: nothing to rewrite: the binding journal (a file beside this
// one) is new. The schema byte moves so that an older ispmux, which would
// not replay the journal and would lose the bindings it holds, refuses
// the file.
//
// 7 → 8: nothing to rewrite: the binding journal has a second file
// (STATE.journal.1). The schema byte moves so that an older ispmux, which
// reads only the first, refuses the file: it would lose the acknowledged
// bindings a crash left in the second, hand their LSNs out again, and a
// later upgrade would replay the second file's stale records over its
// writes (found in review).
//
// 8 → 9: per-ISP event numbers (eventseq.go). The index entries stay as
// they are (keyed by Seq, no value: their ISPSeq is their Seq); the
// event-isp-seqs bucket is new, and startISPSeqs starts every ISP's
// sequence at the log's newest Seq (an ISP with no event in the log, with
// a gap from the number before the log's oldest: those up to it may have
// been its events, trimmed), once the binding journal's records are
// replayed (keyEventISPStart marks it to do): their events, which the
// ISPs' readers may have read already by their Seq, are indexed by it as
// the older ones are, and the ISPs' new numbers go on above them. The schema byte moves so that an
// older ispmux, which would key its new index entries by Seq among the
// ISPs' numbers, refuses the file.
//
// 9 → 10: the events-by-mac index is built from every event that decodes
// and has a MAC, each entry with the event's ISPSeq from events-by-isp (a
// file of schema 8 or older: its Seq, as that index has it): this
// transaction marks it to be built (startMACRebuild), and Open builds it
// after it, in transactions of its own, resumed after a crash
// (rebuildMACIndex, migratemac.go). The binding journal's events,
// replayed after the build, get theirs as they are appended (eventAt).
// The schema byte moves so that an older ispmux, which would append
// events without their entries and trim events leaving theirs behind,
// refuses the file.
//
// 10 → 11: the events-by-mac index is emptied and built again in the
// same way, its keys holding each event's ISP before the low bits, so
// that an ISP's read of a device seeks its own entries alone. The schema
// byte moves so that an older ispmux, which would read the new keys as
// malformed and write its own beside them, refuses the file.
//
// 11 → 12: nothing to rewrite (a file of schema 11 has its whole index:
// that ispmux built it in the migration's one transaction). The schema
// byte moves because from now on a migrated file's index may be in the
// middle of its build, marked (migratemac.go), which an ispmux of schema
// 11 would take for whole; a file migrated from 10 or older goes to 12 at
// once, in the transaction that marks its build.
func migrate(tx *bolt.Tx, from byte) error {
	if from < 1 || from >= schemaVersion {
		return fmt.Errorf("no migration from schema %d", from)
	}
	if from == 1 {
		if err := recodeAll(tx); err != nil {
			return err
		}
	}
	if from <= 2 {
		if err := buildIndexes(tx); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketExpiry) != nil {
		if err := tx.DeleteBucket(bucketExpiry); err != nil {
			return fmt.Errorf("delete bucket %s: %w", bucketExpiry, err)
		}
	}
	if from <= 8 {
		// startISPSeqs, after the journal's replay (openJournalFor).
		if err := tx.Bucket(bucketMeta).Put(keyEventISPStart, []byte{1}); err != nil {
			return fmt.Errorf("bucket %s: %w", bucketMeta, err)
		}
	}
	if from <= 10 {
		// Emptied (10: built again with the ISP in its keys) and built
		// after this transaction (migratemac.go).
		if err := startMACRebuild(tx); err != nil {
			return err
		}
	}
	return nil
}

// recodeAll is the 1 → 2 step.
func recodeAll(tx *bolt.Tx) error {
	steps := []struct {
		bucket []byte
		recode func(k, v []byte) ([]byte, error)
	}{
		{bucketRegistrations, func(k, v []byte) ([]byte, error) {
			r, err := decodeRegistration(k, v)
			return encodeRegistration(&r), err
		}},
		{bucketBindings, func(k, v []byte) ([]byte, error) {
			b, err := decodeBinding(k, v)
			return encodeBinding(&b), err
		}},
		{bucketEvents, func(k, v []byte) ([]byte, error) {
			e, err := decodeEvent(k, v)
			return encodeEvent(&e), err
		}},
	}
	for _, st := range steps {
		bk := tx.Bucket(st.bucket)
		// Collect first: a bbolt cursor must not walk a bucket being
		// written.
		var keys, vals [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			nv, err := st.recode(k, v)
			if err != nil || v == nil {
				return nil // corrupt (kept as is) or a nested bucket
			}
			keys = append(keys, append([]byte(nil), k...))
			vals = append(vals, nv)
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := bk.Put(keys[i], vals[i]); err != nil {
				return fmt.Errorf("bucket %s key %x: %w", st.bucket, keys[i], err)
			}
		}
	}
	return nil
}

// buildIndexes is the 2 → 3 step: the index buckets (created empty by the
// caller) are filled, in key order.
func buildIndexes(tx *bolt.Tx) error {
	var ix indexOps
	err := tx.Bucket(bucketRegistrations).ForEach(func(k, v []byte) error {
		if r, err := decodeRegistration(k, v); err == nil {
			return ix.insert(tx, deviceIndexKey(r.ISP, r.CustomerID, r.MAC))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := ix.apply(tx); err != nil {
		return fmt.Errorf("bucket %s: %w", bucketDeviceIndex, err)
	}
	var evKeys [][]byte
	err = tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		if e, err := decodeEvent(k, v); err == nil && e.ISP != "" {
			evKeys = append(evKeys, eventIndexKey(e.ISP, e.Seq))
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(evKeys, bytes.Compare)
	idx := tx.Bucket(bucketEventIndex)
	for _, k := range evKeys {
		if err := idx.Put(k, nil); err != nil {
			return fmt.Errorf("bucket %s: %w", bucketEventIndex, err)
		}
	}
	return nil
}
