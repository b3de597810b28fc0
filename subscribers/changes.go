package subscribers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ChangeKind says which kind of record a change is about.
type ChangeKind string

// Change kinds.
const (
	ChangeCustomer ChangeKind = "customer" // Key: ISP, 0x00, customer ID
	ChangeDevice   ChangeKind = "device"   // Key: the 6-byte MAC (a registration)
)

// ChangeOp says what happened to the record.
type ChangeOp string

// Change operations.
const (
	ChangePut    ChangeOp = "put"    // created or replaced: read the record for its value
	ChangeDelete ChangeOp = "delete" // deleted
)

// Change is one entry of the change feed: a customer or a device
// (registration) was written or deleted. It names the record, not its
// value: a follower reads the record (Customer, Registration) to learn
// what it is now. Seq increases by one per change, across restarts.
type Change struct {
	Seq  uint64
	Time time.Time
	Kind ChangeKind
	Op   ChangeOp
	Key  []byte // the record's key in its bucket

	// Decoded from Key: ISP and CustomerID for ChangeCustomer, MAC for
	// ChangeDevice.
	ISP        string
	CustomerID string
	MAC        MAC
}

// fill checks c's kind and op and decodes its key into the fields.
func (c *Change) fill() error {
	switch c.Op {
	case ChangePut, ChangeDelete:
	default:
		return fmt.Errorf("unknown change op %q", c.Op)
	}
	switch c.Kind {
	case ChangeDevice:
		if len(c.Key) != 6 {
			return fmt.Errorf("device change key is %d bytes, want 6", len(c.Key))
		}
		c.MAC = MAC(c.Key)
	case ChangeCustomer:
		i := indexByte(c.Key, 0)
		if i < 0 {
			return errors.New("customer change key has no 0x00")
		}
		c.ISP, c.CustomerID = string(c.Key[:i]), string(c.Key[i+1:])
	default:
		return fmt.Errorf("unknown change kind %q", c.Kind)
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// changeAppend appends a change of kind/op/key at time now to the feed in
// tx and trims the feed like the event log (eventPut): to the newest
// s.changeRetention, and those more than s.changeMaxAge older than now,
// looking only at the front. It recomputes everything from tx, so it may
// run again in a retried transaction.
func (s *Store) changeAppend(tx *bolt.Tx, now time.Time, kind ChangeKind, op ChangeOp, key []byte) error {
	bk := tx.Bucket(bucketChanges)
	bk.FillPercent = 0.95 // append-only: keep the pages full
	seq, err := bk.NextSequence()
	if err != nil {
		return err
	}
	c := Change{Time: now, Kind: kind, Op: op, Key: key}
	if err := bk.Put(seqKey(seq), encodeChange(&c)); err != nil {
		return err
	}
	var cutoff uint64
	if seq > s.changeRetention {
		cutoff = seq - s.changeRetention
	}
	cutTime := now.Add(-s.changeMaxAge)
	// After a delete the cursor seeks to the deleted key (the next one
	// now), never First: bbolt rebalances only at commit, so First walks
	// every leaf this transaction emptied, and a write trimming n entries
	// cost O(n²) (200k: 5 s, every ACK waiting behind it in the group
	// commit). Seek descends from the root past them.
	cur := bk.Cursor()
	var del []byte
	for k, v := cur.First(); k != nil; k, v = cur.Seek(del) {
		del = append(del[:0], k...)
		if len(k) == 8 && binary.BigEndian.Uint64(k) > cutoff {
			if binary.BigEndian.Uint64(k) == seq {
				break
			}
			old, err := decodeChange(k, v)
			if err == nil && !old.Time.Before(cutTime) {
				break
			}
		}
		if err := cur.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Changes returns up to limit entries of the change feed with Seq > after,
// ascending (limit <= 0: all). Entries older than the retention
// (Options.ChangeRetention, Options.ChangeMaxAge) are gone: a reader whose
// first entry has Seq > after+1, or that gets none while ChangeSeq() >
// after, missed some and must reload the records (AllCustomers,
// Registrations) before following again from ChangeSeq. If some values are
// corrupt it returns the others together with an error wrapping
// ErrCorrupt for each bad one.
func (s *Store) Changes(after uint64, limit int) ([]Change, error) {
	cs, _, err := s.changes(after, limit)
	return cs, err
}

// changes is Changes, also returning the Seq of the last entry it looked
// at, readable or not (after if none).
func (s *Store) changes(after uint64, limit int) ([]Change, uint64, error) {
	if after == math.MaxUint64 {
		return nil, after, nil
	}
	var cs []Change
	var bad []error
	last := after
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && (limit <= 0 || len(cs)+len(bad) < limit); k, v = c.Next() {
			if len(k) == 8 {
				last = binary.BigEndian.Uint64(k)
			}
			ch, err := decodeChange(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			cs = append(cs, ch)
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return cs, last, fmt.Errorf("changes after %d: %w", after, err)
	}
	return cs, last, nil
}

// ChangeSeq returns the Seq of the newest change ever appended (0 if none):
// a follower that has just read every record starts from it.
func (s *Store) ChangeSeq() (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		seq = tx.Bucket(bucketChanges).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("change seq: %w", err)
	}
	return seq, nil
}

// watchBatch is how many changes Watch reads per read transaction.
const watchBatch = 256

// Watch follows the change feed from Seq from (exclusive): it sends every
// change with Seq > from on the returned channel, in order, then each new
// one as its write commits (woken in-process by the commit, no polling).
// The channel is closed when ctx ends, when the store is closed, or when
// the feed cannot be read (the error is not reported: the reader resumes
// with Changes or a new Watch from the last Seq it got).
//
// Delivery is paced by the reader: Watch reads the feed in batches and
// blocks on the channel while the reader is busy, holding no lock and no
// transaction, so a slow reader delays nobody and loses nothing while the
// feed still holds its position. A reader that falls behind by more than
// the feed keeps (Options.ChangeRetention, Options.ChangeMaxAge) sees a gap:
// a change whose Seq is not the previous Seq + 1 (or, for the first, not
// from+1). Entries in between were trimmed; it must reload the records
// (AllCustomers, Registrations) and go on from the Seq it got. A
// reader that stops reading must cancel ctx, or the goroutine behind the
// channel stays blocked on it.
func (s *Store) Watch(ctx context.Context, from uint64) <-chan Change {
	out := make(chan Change, watchBatch)
	go func() {
		defer close(out)
		for {
			// Take the wake-up channel before reading, so a commit
			// after the read is not missed.
			woken := s.waitChannel(wakeChanges)
			cs, last, err := s.changes(from, watchBatch)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return
			}
			for _, c := range cs {
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
			if last != from {
				from = last // past the corrupt entries too
				continue
			}
			select {
			case <-woken:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// What a commit wakes (call.wakes), and the index of its channel in
// Store.notify.
const (
	wakeChanges uint8 = 1 << iota
	wakeEvents
	wakeAll = wakeChanges | wakeEvents
)

// waitChannel returns a channel closed at the next commit that wakes what
// (one of wakeChanges, wakeEvents), or at Close.
func (s *Store) waitChannel(what uint8) <-chan struct{} {
	i := bits.TrailingZeros8(what)
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.notify[i] == nil {
		s.notify[i] = make(chan struct{})
	}
	return s.notify[i]
}

// wake releases the readers waiting on waitChannel for any of what.
func (s *Store) wake(what uint8) {
	if what == 0 {
		return
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	for i := range s.notify {
		if what&(1<<i) != 0 && s.notify[i] != nil {
			close(s.notify[i])
			s.notify[i] = nil
		}
	}
}
