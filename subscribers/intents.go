package subscribers

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
)

// IntentKind says what an intent is about to tell the ISP.
type IntentKind string

// Intent kinds.
const (
	IntentRelease IntentKind = "release" // a DHCPRELEASE for the binding's lease
	IntentDecline IntentKind = "decline" // a DHCPDECLINE of the binding's address
	// IntentReleaseUnbound is a DHCPRELEASE of a lease an ISP's server
	// committed in an ACK ispmux did not bind (refused, or a rapid-commit
	// ACK the client does not use): stored alone (AddIntent), there is no
	// binding to remove.
	IntentReleaseUnbound IntentKind = "release_unbound"
)

// Intent is the durable record of a message about to be sent to an ISP
// that ends a binding (see EndBinding). It is written in the transaction
// that removes the binding, deleted by CompleteIntent once the message has
// been sent, and replayed at start while pending: so a crash between the
// two leaves neither a binding the ISP has freed (the removal is durable
// first) nor a lease at the ISP that nobody uses (the message is resent).
type Intent struct {
	ID      uint64 // assigned by the store, increasing across restarts
	Kind    IntentKind
	ISP     string     // the ISP to send to
	MAC     MAC        // the subscriber
	Access  string     // the binding's access port name
	VLAN    uint16     // the binding's VLAN
	IP      netip.Addr // the leased address the message is about
	Message []byte     // the DHCP message (UDP payload) to send to each of the ISP's servers
	Created time.Time  // set to now if zero
}

// prepareIntent is in as the store writes it: no ID yet (intentPut gives
// it), Created now if zero, and checked (validateIntent).
func prepareIntent(in Intent, now time.Time) (Intent, error) {
	in.ID = 0
	if in.Created.IsZero() {
		in.Created = now
	}
	return in, validateIntent(&in)
}

func validateIntent(in *Intent) error {
	switch in.Kind {
	case IntentRelease, IntentDecline, IntentReleaseUnbound:
	default:
		return fmt.Errorf("%w: unknown intent kind %q", ErrInvalid, in.Kind)
	}
	if err := validAccess(in.Access); err != nil {
		return err
	}
	if in.ISP == "" || len(in.ISP) > maxString {
		return fmt.Errorf("%w: ISP name is %d bytes (want 1..%d)", ErrInvalid, len(in.ISP), maxString)
	}
	if !in.IP.IsValid() {
		return fmt.Errorf("%w: no IP address", ErrInvalid)
	}
	if len(in.Message) == 0 || len(in.Message) > maxMessage {
		return fmt.Errorf("%w: message is %d bytes (want 1..%d)", ErrInvalid, len(in.Message), maxMessage)
	}
	return nil
}

// EndBinding removes the binding of (access, vlan, mac) if there is one,
// stores the intent in (if non-nil; its ID is assigned, Created set to now
// if zero) and appends the event e (Seq assigned, as AddEvent), all in one
// durable transaction (grouped with the concurrent writes): after a crash
// either all of it happened or none. found reports whether a binding was
// there; the intent and the event are stored either way. The returned
// Intent is the zero Intent when in is nil.
//
// This is the first step of a release or decline: EndBinding, then send
// in.Message, then CompleteIntent(ID). With a nil intent it ends a binding
// that needs no message (expiry).
func (s *Store) EndBinding(access string, vlan uint16, mac MAC, in *Intent, e Event) (Intent, Event, bool, error) {
	name := func() string { return bindingName(access, vlan, mac) } // for errors only
	if err := validAccess(access); err != nil {
		return Intent{}, Event{}, false, fmt.Errorf("end binding %s: %w", name(), err)
	}
	var it Intent
	var putI func(tx *bolt.Tx) error
	if in != nil {
		var err error
		if it, err = prepareIntent(*in, time.Now()); err != nil {
			return Intent{}, Event{}, false, fmt.Errorf("end binding %s: intent: %w", name(), err)
		}
		putI = intentPut(&it)
	}
	if err := prepareEvent(&e); err != nil {
		return Intent{}, Event{}, false, fmt.Errorf("end binding %s: %w", name(), err)
	}
	del := bindingDelete(access, vlan, mac)
	putE := s.eventPut(&e)
	var found bool
	err := s.updateWaking(func(tx *bolt.Tx) error {
		var err error
		if found, err = del(tx); err != nil {
			return err
		}
		if putI != nil {
			if err := putI(tx); err != nil {
				return err
			}
		}
		return putE(tx)
	}, wakeEvents)
	if err != nil {
		return Intent{}, Event{}, false, fmt.Errorf("end binding %s with event %s: %w", name(), e.Kind, err)
	}
	return it, e, found, nil
}

// BindingEnd is one binding EndBindings ends, and the event recording it.
type BindingEnd struct {
	Access string
	VLAN   uint16
	MAC    MAC
	// Expires, if set, removes the binding only while the one stored has
	// this expiry (the binding a start found lapsed): one committed since
	// (the subscriber bound again) stays, and the event is written only
	// if that one is of another address (the lapsed lease's did end),
	// saying so. Without it, the binding stored is removed, if any, and
	// the event written either way.
	Expires time.Time
	Event   Event
	// Intent, if set, is stored with the end, in the same transaction
	// (as EndBinding's): its ID is assigned, and Created set to now if
	// zero, in *Intent once EndBindings returns with the end committed.
	// Not with Expires (ErrInvalid): an end that may not happen has no
	// message to send.
	Intent *Intent
}

// endBatch is how many bindings EndBindings ends in one transaction.
const endBatch = 4096

// EndBindings ends many bindings (each removed if stored, its event and
// its intent, if any, stored), endBatch to a durable transaction, in key
// order within one: what a restart after a long outage does with the
// bindings whose leases ran out meanwhile, beside its first DHCP, and a
// start with the bindings of access circuits no longer configured (each
// with the RELEASE intent to its ISP). One transaction each (EndBinding,
// even side by side through the group commit) cost ~95 µs a binding: 9.5
// s of a restart's outage at 100k (a trial). Each end's intent is in the
// transaction of its end: a crash between two leaves the first's bindings
// ended with their intents stored, the second's bindings stored and no
// intent of theirs. It returns the events stored (their Seq set) in the
// order of ends, and on error those of the transactions committed before
// it (whose intents are set in their ends). With Expires set (a start's
// ends, run beside its DHCP), a binding committed since is kept.
func (s *Store) EndBindings(ends []BindingEnd) ([]Event, error) {
	evs := make([]Event, 0, len(ends))
	for len(ends) > 0 {
		chunk := ends[:min(endBatch, len(ends))]
		ends = ends[len(chunk):]
		order := make([]int, len(chunk))
		keys := make([][]byte, len(chunk))
		first := len(evs)
		ins := make([]Intent, len(chunk)) // the intents to store (ID 0: none)
		now := time.Now()
		for i := range chunk {
			e := &chunk[i]
			if err := validAccess(e.Access); err != nil {
				return evs[:first], fmt.Errorf("end binding %s: %w", bindingName(e.Access, e.VLAN, e.MAC), err)
			}
			ev := e.Event
			if err := prepareEvent(&ev); err != nil {
				return evs[:first], fmt.Errorf("end binding %s: %w", bindingName(e.Access, e.VLAN, e.MAC), err)
			}
			if e.Intent != nil {
				if !e.Expires.IsZero() {
					return evs[:first], fmt.Errorf("end binding %s: %w: an intent with a conditional end (Expires)", bindingName(e.Access, e.VLAN, e.MAC), ErrInvalid)
				}
				var err error
				if ins[i], err = prepareIntent(*e.Intent, now); err != nil {
					return evs[:first], fmt.Errorf("end binding %s: intent: %w", bindingName(e.Access, e.VLAN, e.MAC), err)
				}
			}
			evs = append(evs, ev)
			order[i], keys[i] = i, bindingKey(e.Access, e.VLAN, e.MAC)
		}
		slices.SortFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
		batch := evs[first:]
		skip := make([]bool, len(chunk))
		again := make([]netip.Addr, len(chunk)) // the address bound again since, if any
		put := make([]Event, len(chunk))        // the events as stored
		err := s.updateWaking(func(tx *bolt.Tx) error {
			clear(skip)
			clear(again)
			bk := tx.Bucket(bucketBindings)
			for _, i := range order {
				e := &chunk[i]
				v := bk.Get(keys[i])
				if v == nil {
					continue
				}
				if !e.Expires.IsZero() {
					b, err := decodeBindingFrom(keys[i], v, true)
					if err != nil {
						continue // not readable: not the one found lapsed either
					}
					if !b.Expires.Equal(e.Expires) {
						// Bound again since: kept. Its lapsed lease's
						// event only if it was of another address (the
						// same address is live again: an expired event
						// after its bound one would say it is not).
						skip[i], again[i] = b.IP == batch[i].IP, b.IP
						continue
					}
				}
				if err := bk.Delete(keys[i]); err != nil {
					return err
				}
			}
			// The intents, then the events, in the order of ends (their
			// numbers follow it).
			for i := range ins {
				if chunk[i].Intent != nil {
					if err := intentPut(&ins[i])(tx); err != nil {
						return err
					}
				}
			}
			for i := range batch {
				if skip[i] {
					continue
				}
				put[i] = batch[i] // batch unchanged: a retried transaction starts from it again
				if again[i].IsValid() {
					put[i].Reason += "; bound again since at " + again[i].String()
				}
				if err := s.eventPut(&put[i])(tx); err != nil {
					return err
				}
			}
			return nil
		}, wakeEvents)
		if err != nil {
			return evs[:first], fmt.Errorf("end %d bindings: %w", len(chunk), err)
		}
		for i := range chunk {
			if chunk[i].Intent != nil {
				*chunk[i].Intent = ins[i]
			}
		}
		k := first
		for i := range batch {
			if !skip[i] {
				evs[k] = put[i]
				k++
			}
		}
		evs = evs[:k]
		failpoint.Hit(failpoint.RestartEndAfterBatch)
	}
	return evs, nil
}

// AddIntent stores in (its ID assigned, Created set to now if zero) on its
// own, durable on return: the first step of a message to an ISP about an
// address ispmux never bound (a DECLINE of an ACKed address in conflict,
// the RELEASE of an ACK it refused), so there is no binding to remove with
// it. Then send in.Message, then
// CompleteIntent(ID), as for EndBinding's.
func (s *Store) AddIntent(in Intent) (Intent, error) {
	in, err := prepareIntent(in, time.Now())
	if err != nil {
		return Intent{}, fmt.Errorf("add intent: %w", err)
	}
	if err := s.update(intentPut(&in)); err != nil {
		return Intent{}, fmt.Errorf("add intent %s of %v: %w", in.Kind, in.IP, err)
	}
	return in, nil
}

// intentPut returns the transaction step that stores in (validated) under
// the next ID of the intents bucket, assigning in.ID.
func intentPut(in *Intent) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketIntents)
		id, err := bk.NextSequence()
		if err != nil {
			return err
		}
		in.ID = id
		return bk.Put(seqKey(id), encodeIntent(in))
	}
}

// CompleteIntent deletes the intent id: its message was sent. Durable on
// return; deleting one that is not there is not an error (a replay may
// complete an intent twice).
func (s *Store) CompleteIntent(id uint64) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIntents).Delete(seqKey(id))
	})
	if err != nil {
		return fmt.Errorf("complete intent %d: %w", id, err)
	}
	return nil
}

// CompleteIntents deletes the intents ids, whose messages were sent, in
// one durable transaction (in key order): after a crash either all of
// them are deleted or none. Durable on return; an ID that is not there is
// not an error, as for CompleteIntent. It is for a timer round's backlog
// (thousands of intents settled at once after an ISP's outage), where one
// commit each costs an fdatasync each; the caller bounds len(ids) so that
// one commit stays short (a few thousand: dhcpproxy's completeBatch).
func (s *Store) CompleteIntents(ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = seqKey(id)
	}
	slices.SortFunc(keys, bytes.Compare)
	err := s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketIntents)
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("complete %d intents (IDs %d..%d): %w", len(ids), slices.Min(ids), slices.Max(ids), err)
	}
	return nil
}

// Intents returns the pending intents, oldest (lowest ID) first, for the
// replay at start. If some values are corrupt it returns the others
// together with an error wrapping ErrCorrupt for each bad one.
func (s *Store) Intents() ([]Intent, error) {
	var ins []Intent
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIntents).ForEach(func(k, v []byte) error {
			in, err := decodeIntent(k, v)
			if err != nil {
				bad = append(bad, err)
				return nil
			}
			ins = append(ins, in)
			return nil
		})
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return ins, fmt.Errorf("intents: %w", err)
	}
	return ins, nil
}
