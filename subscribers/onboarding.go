package subscribers

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketOnboarding holds the onboarding leases (schema 5): key the 6-byte
// MAC, one lease per MAC.
var bucketOnboarding = []byte("onboarding")

// OnboardingLease is a lease ispmux granted itself, from an access
// circuit's onboarding pool, to a MAC without a device record (it is bound
// in the walled garden until it chooses an ISP on the portal). It is keyed
// by MAC: a MAC holds at most one. No ISP sees it: it is not a Binding,
// and its events have no ISP.
type OnboardingLease struct {
	MAC     MAC
	Access  string     // access port name
	VLAN    uint16     // subscriber VLAN on that port (0 = untagged)
	IP      netip.Addr // the leased address (IPv4)
	Granted time.Time  // when it was first granted (renewals keep it)
	Expires time.Time  // lease end
}

func validateOnboarding(l *OnboardingLease) error {
	if err := validAccess(l.Access); err != nil {
		return err
	}
	if !l.IP.Is4() {
		return fmt.Errorf("%w: address %v is not IPv4", ErrInvalid, l.IP)
	}
	if l.Expires.IsZero() {
		return fmt.Errorf("%w: no lease end (Expires)", ErrInvalid)
	}
	return nil
}

// CommitOnboarding inserts or replaces the onboarding lease of l.MAC and
// appends the event e recording it (EventOnboarded for a grant), in one
// durable transaction (grouped with the concurrent writes): it returns
// only once both are fsynced, so the caller may then ACK. An e with an
// empty Kind writes no event (a renewal is not an event); the returned
// Event is then the zero Event. A zero l.Granted is set to now.
func (s *Store) CommitOnboarding(l OnboardingLease, e Event) (Event, error) {
	name := macString(l.MAC)
	if err := validateOnboarding(&l); err != nil {
		return Event{}, fmt.Errorf("commit onboarding lease of %s: %w", name, err)
	}
	if l.Granted.IsZero() {
		l.Granted = time.Now()
	}
	var putE func(tx *bolt.Tx) error
	var wakes uint8
	if e.Kind != "" {
		if err := prepareEvent(&e); err != nil {
			return Event{}, err
		}
		putE = s.eventPut(&e)
		wakes = wakeEvents
	}
	key := append([]byte(nil), l.MAC[:]...)
	val := encodeOnboarding(&l)
	err := s.updateWaking(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOnboarding).Put(key, val); err != nil {
			return err
		}
		if putE != nil {
			return putE(tx)
		}
		return nil
	}, wakes)
	if err != nil {
		return Event{}, fmt.Errorf("commit onboarding lease of %s: %w", name, err)
	}
	if putE == nil {
		return Event{}, nil
	}
	return e, nil
}

// EndOnboarding removes mac's onboarding lease and appends the event e
// recording its end (EventOnboardingEnded), in one durable transaction.
// found reports whether there was a lease; if there was none nothing is
// written (no event) and the returned Event is the zero Event.
func (s *Store) EndOnboarding(mac MAC, e Event) (Event, bool, error) {
	name := macString(mac)
	if err := prepareEvent(&e); err != nil {
		return Event{}, false, fmt.Errorf("end onboarding lease of %s: %w", name, err)
	}
	key := append([]byte(nil), mac[:]...)
	putE := s.eventPut(&e)
	var found bool
	err := s.updateWaking(func(tx *bolt.Tx) error {
		// Idempotent (a closure may run again, see the package doc):
		// everything it reports is recomputed.
		found, e.Seq = false, 0
		bk := tx.Bucket(bucketOnboarding)
		if bk.Get(key) == nil {
			return nil
		}
		found = true
		if err := bk.Delete(key); err != nil {
			return err
		}
		return putE(tx)
	}, wakeEvents)
	if err != nil {
		return Event{}, false, fmt.Errorf("end onboarding lease of %s with event %s: %w", name, e.Kind, err)
	}
	if !found {
		return Event{}, false, nil
	}
	return e, true, nil
}

// OnboardingLeases returns every onboarding lease, sorted by MAC (the
// restore at start). If some values are corrupt it returns the others
// together with an error wrapping ErrCorrupt for each bad one.
func (s *Store) OnboardingLeases() ([]OnboardingLease, error) {
	var ls []OnboardingLease
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOnboarding).ForEach(func(k, v []byte) error {
			l, err := decodeOnboarding(k, v)
			if err != nil {
				bad = append(bad, err)
				return nil
			}
			ls = append(ls, l)
			return nil
		})
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return ls, fmt.Errorf("onboarding leases: %w", err)
	}
	return ls, nil
}

// Onboarding lease: version, MAC, Access, VLAN, IP, Granted, Expires. The
// key is the MAC. Onboarding leases exist from version 4 on (schema 5).

func encodeOnboarding(l *OnboardingLease) []byte {
	e := encoder{b: make([]byte, 0, 48)}
	e.u8(formatVersion)
	e.mac(l.MAC)
	e.str(l.Access)
	e.u16(l.VLAN)
	e.addr(l.IP)
	e.time(l.Granted)
	e.time(l.Expires)
	return e.b
}

func decodeOnboarding(key, val []byte) (OnboardingLease, error) {
	d := decoder{b: val}
	if v := d.version(); d.err == nil && v < 4 {
		d.fail(fmt.Errorf("format version %d has no onboarding leases", v))
	}
	var l OnboardingLease
	l.MAC = d.mac()
	l.Access = d.str()
	l.VLAN = d.u16()
	l.IP = d.addr()
	l.Granted = d.time()
	l.Expires = d.time()
	if err := d.finish(); err != nil {
		return OnboardingLease{}, corrupt(bucketOnboarding, key, err)
	}
	if string(key) != string(l.MAC[:]) {
		return OnboardingLease{}, corrupt(bucketOnboarding, key, fmt.Errorf("value is for MAC %s", macString(l.MAC)))
	}
	if !l.IP.Is4() {
		return OnboardingLease{}, corrupt(bucketOnboarding, key, fmt.Errorf("address %v is not IPv4", l.IP))
	}
	return l, nil
}
