package subscribers

import (
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Registration sources.
const (
	SourceConfig = "config"
	SourceAPI    = "api"
)

// Registration says which ISP serves a subscriber MAC, or that it is
// blocked.
type Registration struct {
	MAC        MAC
	CustomerID string // the ISP's customer ID (sent as Option 82 subscriber-id)
	ISP        string // chosen ISP name
	Blocked    bool   // registered but not allowed
	Access     string // optional: access port name it must appear on ("" = any)
	Source     string // SourceConfig or SourceAPI
	Updated    time.Time
}

func validateRegistration(r *Registration) error {
	for _, f := range []struct{ name, v string }{
		{"customer ID", r.CustomerID}, {"ISP", r.ISP}, {"access", r.Access}, {"source", r.Source},
	} {
		if len(f.v) > maxString {
			return fmt.Errorf("%w: %s is %d bytes (max %d)", ErrInvalid, f.name, len(f.v), maxString)
		}
	}
	if strings.IndexByte(r.Access, 0) >= 0 {
		return fmt.Errorf("%w: access port name contains NUL", ErrInvalid)
	}
	if r.Source == "" {
		return fmt.Errorf("%w: empty source", ErrInvalid)
	}
	return nil
}

// PutRegistration inserts or replaces the registration of r.MAC. A zero
// r.Updated is set to now. Durable on return.
func (s *Store) PutRegistration(r Registration) error {
	if err := validateRegistration(&r); err != nil {
		return fmt.Errorf("put registration %s: %w", macString(r.MAC), err)
	}
	if r.Updated.IsZero() {
		r.Updated = time.Now()
	}
	val := encodeRegistration(&r)
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegistrations).Put(r.MAC[:], val)
	})
	if err != nil {
		return fmt.Errorf("put registration %s: %w", macString(r.MAC), err)
	}
	return nil
}

// DeleteRegistration removes the registration of mac and reports whether
// there was one. Durable on return.
func (s *Store) DeleteRegistration(mac MAC) (bool, error) {
	var found bool
	err := s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRegistrations)
		found = bk.Get(mac[:]) != nil
		if !found {
			return nil
		}
		return bk.Delete(mac[:])
	})
	if err != nil {
		return false, fmt.Errorf("delete registration %s: %w", macString(mac), err)
	}
	return found, nil
}

// Registration returns the registration of mac, or ErrNotFound.
func (s *Store) Registration(mac MAC) (Registration, error) {
	var r Registration
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRegistrations).Get(mac[:])
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeRegistration(mac[:], v)
		return err
	})
	if err != nil {
		return Registration{}, fmt.Errorf("registration %s: %w", macString(mac), err)
	}
	return r, nil
}

// Registrations returns every registration, sorted by MAC. If some values
// are corrupt it returns the others together with an error wrapping
// ErrCorrupt for each bad one.
func (s *Store) Registrations() ([]Registration, error) {
	var rs []Registration
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRegistrations)
		rs = make([]Registration, 0, bk.Stats().KeyN)
		return bk.ForEach(func(k, v []byte) error {
			r, err := decodeRegistration(k, v)
			if err != nil {
				bad = append(bad, err)
				return nil
			}
			rs = append(rs, r)
			return nil
		})
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return rs, fmt.Errorf("registrations: %w", err)
	}
	return rs, nil
}

// SyncRegistrations makes the set of registrations whose Source is source
// equal rs, in one durable transaction (a config reload). Every entry of rs
// gets Source = source; an entry whose MAC is registered by another source
// is taken over by this one. Entries that did not change keep their stored
// Updated time; changed and new ones get theirs (now, if zero). added counts
// MACs that had no registration from source before, changed those whose
// registration from source was rewritten, removed those that were deleted. Registrations from other sources are untouched. A corrupt
// stored registration is overwritten if rs has its MAC, and otherwise left
// alone.
func (s *Store) SyncRegistrations(source string, rs []Registration) (added, changed, removed int, err error) {
	now := time.Now()
	want := make(map[MAC][]byte, len(rs))
	wantReg := make(map[MAC]*Registration, len(rs))
	for i := range rs {
		r := rs[i]
		r.Source = source
		if err := validateRegistration(&r); err != nil {
			return 0, 0, 0, fmt.Errorf("sync registrations %q: %s: %w", source, macString(r.MAC), err)
		}
		if _, dup := want[r.MAC]; dup {
			return 0, 0, 0, fmt.Errorf("sync registrations %q: %w: MAC %s listed twice", source, ErrInvalid, macString(r.MAC))
		}
		if r.Updated.IsZero() {
			r.Updated = now
		}
		want[r.MAC] = encodeRegistration(&r)
		wantReg[r.MAC] = &r
	}
	err = s.update(func(tx *bolt.Tx) error {
		added, changed, removed = 0, 0, 0
		bk := tx.Bucket(bucketRegistrations)
		var drop [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			old, err := decodeRegistration(k, v)
			if err != nil || old.Source != source {
				return nil
			}
			if _, ok := want[old.MAC]; !ok {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := bk.Delete(k); err != nil {
				return err
			}
			removed++
		}
		for mac, val := range want {
			if v := bk.Get(mac[:]); v != nil {
				old, err := decodeRegistration(mac[:], v)
				if err == nil && old.Source == source && sameRegistration(&old, wantReg[mac]) {
					continue // unchanged: keep its Updated, no write
				}
				if err != nil || old.Source != source {
					added++
				} else {
					changed++
				}
			} else {
				added++
			}
			if err := bk.Put(mac[:], val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("sync registrations %q: %w", source, err)
	}
	return added, changed, removed, nil
}

// sameRegistration compares everything but Updated.
func sameRegistration(a, b *Registration) bool {
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	return x == y
}
