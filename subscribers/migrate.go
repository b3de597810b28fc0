package subscribers

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// migrate brings a file of schema from up to schemaVersion, inside Open's
// transaction tx (whose buckets exist): either the whole migration and
// the new schema byte commit, or nothing does and the file stays as it
// was.
//
// 1 → 2: every registration, binding and event is re-encoded in format
// version 2 (the bindings' and events' new fields are empty); the keys,
// the expiry index and the event sequence are unchanged; the intents
// bucket is new (created by the caller). A value that does not decode is
// left as it is: it was already unreadable, and the readers keep reporting
// it as a CorruptError rather than the migration refusing the whole file.
func migrate(tx *bolt.Tx, from byte) error {
	if from != 1 {
		return fmt.Errorf("no migration from schema %d", from)
	}
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
