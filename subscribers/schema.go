package subscribers

// The file's schema as Open finds it: the buckets of the current schema,
// a new file's set-up, the refusal of a newer schema and the migration of
// an older one (migrate.go has the steps), and the marks older builds'
// files carry (relay-is-source-since, intents-ordered-from).

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// allBuckets are the buckets of the current schema.
var allBuckets = [][]byte{
	bucketMeta, bucketRegistrations, bucketBindings, bucketEvents, bucketIntents,
	bucketCustomers, bucketDeviceIndex, bucketEventIndex, bucketChanges, bucketOnboarding,
	bucketEventISPSeq, bucketEventMACIndex,
}

// setUp creates the buckets of a new file, refuses a newer schema, and
// migrates an older one, all in tx. It returns the schema the file had
// (schemaVersion for a new file). With created not nil, a new file's
// event numbers start at newStoreBase (eventbase.go) and *created is set.
func setUp(tx *bolt.Tx, created *bool) (byte, error) {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return 0, fmt.Errorf("create bucket %s: %w", bucketMeta, err)
	}
	from := byte(schemaVersion) // a new file
	v := meta.Get(keySchema)
	fresh := v == nil
	if !fresh {
		if len(v) != 1 || v[0] == 0 {
			return 0, &CorruptError{Bucket: string(bucketMeta), Key: keySchema, Err: fmt.Errorf("schema version %x is not one byte >= 1", v)}
		}
		from = v[0]
	}
	if from > schemaVersion {
		return 0, fmt.Errorf("%w: written by a newer ispmux (schema %d), this one supports up to %d; refusing to open (downgrade)", ErrSchema, from, schemaVersion)
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if from < schemaVersion {
		if err := migrate(tx, from); err != nil {
			return 0, fmt.Errorf("migrate from schema %d to %d: %w", from, schemaVersion, err)
		}
	}
	if fresh && created != nil {
		// A new file (eventbase.go): its numbering starts at the clock.
		// An existing one keeps its own.
		if evs := tx.Bucket(bucketEvents); evs.Sequence() == 0 {
			if k, _ := evs.Cursor().First(); k == nil {
				*created = true
				base := newStoreBase(storeClock())
				if err := startNumbering(tx, base); err != nil {
					return 0, fmt.Errorf("number the events from %d: %w", base, err)
				}
			}
		}
	}
	if meta.Get(keyRelaySince) == nil {
		if err := meta.Put(keyRelaySince, binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))); err != nil {
			return 0, err
		}
	}
	if meta.Get(keyIntentsFrom) == nil {
		next := tx.Bucket(bucketIntents).Sequence() + 1
		if err := meta.Put(keyIntentsFrom, binary.BigEndian.AppendUint64(nil, next)); err != nil {
			return 0, err
		}
	}
	return from, meta.Put(keySchema, []byte{schemaVersion})
}

// keyRelaySince is when a build that stores Binding.Relay as the server
// that granted the lease first opened the file (Unix nanoseconds): before
// it, Relay was the ISP's first configured server (RelayIsSourceSince).
var keyRelaySince = []byte("relay-is-source-since")

// relaySinceOf reads keyRelaySince; false if it is not there.
func relaySinceOf(tx *bolt.Tx) (time.Time, bool) {
	v := tx.Bucket(bucketMeta).Get(keyRelaySince)
	if len(v) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
}

// keyIntentsFrom is the first intent ID given out after a build that
// completes an intent before committing the binding its ISP's answer to a
// later message grants first opened the file (IntentsOrderedFrom).
var keyIntentsFrom = []byte("intents-ordered-from")

// intentsFromOf reads keyIntentsFrom; false if it is not there.
func intentsFromOf(tx *bolt.Tx) (uint64, bool) {
	v := tx.Bucket(bucketMeta).Get(keyIntentsFrom)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// IntentsOrderedFrom is the first intent ID this file gave out under a
// build that completes a subscriber's intents before it commits the
// binding the ISP granted after them: a lower ID's intent was written by
// an older ispmux, which left it pending beside such a binding (it decided
// at start by comparing the intent's Created with the binding's Updated).
func (s *Store) IntentsOrderedFrom() uint64 { return s.intentsFrom }

// RelayIsSourceSince is when the file's bindings began to hold, in Relay,
// the address of the server that granted them: a binding last updated
// before it has the ISP's first configured server there, whoever granted
// it (an older ispmux wrote it so).
func (s *Store) RelayIsSourceSince() time.Time { return s.relaySince }
