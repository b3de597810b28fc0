package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EventKind says what happened to a subscriber.
type EventKind string

// Event kinds.
const (
	EventApproved    EventKind = "approved"     // registration accepted
	EventRejected    EventKind = "rejected"     // registration refused
	EventBound       EventKind = "bound"        // first lease granted
	EventRenewed     EventKind = "renewed"      // lease extended
	EventReleased    EventKind = "released"     // subscriber sent DHCPRELEASE
	EventDeclined    EventKind = "declined"     // subscriber sent DHCPDECLINE
	EventExpired     EventKind = "expired"      // lease ran out
	EventNak         EventKind = "nak"          // ISP answered DHCPNAK
	EventTimeout     EventKind = "timeout"      // ISP did not answer
	EventUnknown     EventKind = "unknown"      // unregistered MAC asked for service
	EventBlocked     EventKind = "blocked"      // blocked MAC asked for service
	EventRateLimited EventKind = "rate-limited" // subscriber exceeded the request rate
	EventRevoked     EventKind = "revoked"      // binding removed: the registration changed
)

// Event is one entry of the event log. Seq increases by one per event,
// across restarts.
type Event struct {
	Seq    uint64
	Time   time.Time
	Kind   EventKind
	MAC    MAC
	ISP    string
	IP     netip.Addr
	Reason string
}

// AddEvent appends e to the log, durably (grouped with concurrent writes),
// and returns it with its Seq assigned (any Seq passed in is ignored) and
// Time set to now if it was zero. The oldest events beyond the retention
// are dropped in the same transaction.
func (s *Store) AddEvent(e Event) (Event, error) {
	if err := prepareEvent(&e); err != nil {
		return Event{}, err
	}
	if err := s.update(s.eventPut(&e)); err != nil {
		return Event{}, fmt.Errorf("add event %s %s: %w", e.Kind, macString(e.MAC), err)
	}
	return e, nil
}

// prepareEvent validates e and sets its Time if zero.
func prepareEvent(e *Event) error {
	if e.Kind == "" {
		return fmt.Errorf("add event: %w: empty kind", ErrInvalid)
	}
	if len(e.Kind) > maxString || len(e.ISP) > maxString || len(e.Reason) > maxString {
		return fmt.Errorf("add event %s: %w: field longer than %d bytes", e.Kind, ErrInvalid, maxString)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Seq = 0
	return nil
}

// eventPut returns the transaction step that appends e (assigning e.Seq)
// and trims the log to the retention.
func (s *Store) eventPut(e *Event) func(tx *bolt.Tx) error {
	val := encodeEvent(e)
	return func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketEvents)
		seq, err := bk.NextSequence()
		if err != nil {
			return err
		}
		if err := bk.Put(seqKey(seq), val); err != nil {
			return err
		}
		e.Seq = seq
		if seq <= s.retention {
			return nil
		}
		// Trim from the front. Re-seek after each delete: a bbolt cursor
		// may skip a key if Next follows Delete.
		cutoff := seq - s.retention
		c := bk.Cursor()
		for k, _ := c.First(); len(k) == 8 && binary.BigEndian.Uint64(k) <= cutoff; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	}
}

// Events returns up to limit events with Seq > afterSeq, ascending by Seq
// (limit <= 0: all). If some values are corrupt it returns the others
// together with an error wrapping ErrCorrupt for each bad one.
func (s *Store) Events(afterSeq uint64, limit int) ([]Event, error) {
	if afterSeq == math.MaxUint64 {
		return nil, nil
	}
	var evs []Event
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil && (limit <= 0 || len(evs) < limit); k, v = c.Next() {
			e, err := decodeEvent(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			evs = append(evs, e)
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return evs, fmt.Errorf("events after %d: %w", afterSeq, err)
	}
	return evs, nil
}

// LastEventSeq returns the Seq of the newest event ever added (0 if none),
// for a reader that wants to start following from now.
func (s *Store) LastEventSeq() (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		seq = tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("last event seq: %w", err)
	}
	return seq, nil
}
