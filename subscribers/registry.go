package subscribers

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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
// blocked: a device, attached to the customer (ISP, CustomerID).
type Registration struct {
	MAC        MAC
	CustomerID string // the ISP's customer ID (sent as Option 82 subscriber-id)
	ISP        string // chosen ISP name
	Blocked    bool   // registered but not allowed
	Access     string // optional: access port name it must appear on ("" = any)
	Source     string // SourceConfig or SourceAPI (or the caller's own, e.g. "claim")
	Updated    time.Time
	// Created is when the MAC was registered to its current customer
	// (ISP and CustomerID): a write with a zero Created keeps the stored
	// one if it leaves the MAC with that customer, and is now otherwise
	// (a new MAC, or one moved to another customer, of its ISP or
	// another). The client identifier reclaim orders registrations by it
	// (dhcpproxy): a device given to another customer is not older than
	// a holder that was there before it came. Registrations stored before
	// schema 3 read as zero until next written; one moved before this
	// rule keeps the Created of its first registration until it moves
	// again.
	Created time.Time
}

func validateRegistration(r *Registration) error {
	for _, f := range []struct{ name, v string }{
		{"customer ID", r.CustomerID}, {"ISP", r.ISP}, {"access", r.Access}, {"source", r.Source},
	} {
		if len(f.v) > maxString {
			return fmt.Errorf("%w: %s is %d bytes (max %d)", ErrInvalid, f.name, len(f.v), maxString)
		}
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%w: %s contains NUL", ErrInvalid, f.name)
		}
	}
	if r.Source == "" {
		return fmt.Errorf("%w: empty source", ErrInvalid)
	}
	return nil
}

// indexOps are devices-by-customer index writes held back by a large write
// (SyncRegistrations, ApplyTenant) to be applied in key order (apply): a
// bbolt node is split only at commit, so keys put in random order into one
// transaction cost a copy of the node's growing key list each, quadratic
// in the keys written; in order they are appended. Each key's last write
// counts, as if they had been made in turn.
type indexOps struct{ ops map[string]bool } // key → put (true) or delete

// apply makes the held back writes in key order.
func (ix *indexOps) apply(tx *bolt.Tx) error {
	idx := tx.Bucket(bucketDeviceIndex)
	keys := make([]string, 0, len(ix.ops))
	for k := range ix.ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var err error
		if ix.ops[k] {
			err = idx.Put([]byte(k), nil)
		} else {
			err = idx.Delete([]byte(k))
		}
		if err != nil {
			return err
		}
	}
	clear(ix.ops)
	return nil
}

func (ix *indexOps) write(tx *bolt.Tx, k []byte, put bool) error {
	if ix == nil {
		if put {
			return tx.Bucket(bucketDeviceIndex).Put(k, nil)
		}
		return tx.Bucket(bucketDeviceIndex).Delete(k)
	}
	if ix.ops == nil {
		ix.ops = make(map[string]bool)
	}
	ix.ops[string(k)] = put
	return nil
}

func (ix *indexOps) delete(tx *bolt.Tx, k []byte) error { return ix.write(tx, k, false) }
func (ix *indexOps) insert(tx *bolt.Tx, k []byte) error { return ix.write(tx, k, true) }

// regPut stores r (validated, Updated set) in tx: a zero r.Created becomes
// the stored registration's Created if r keeps its ISP and customer, now
// otherwise (a new MAC, or a move: Registration.Created); the
// devices-by-customer index entry moves from the old registration's
// (ISP, customer) to r's (through ix if not nil: the caller applies it);
// a device put is appended to the change feed. It returns the old
// registration (nil if none or corrupt). Idempotent: everything is
// recomputed from tx.
func (s *Store) regPut(tx *bolt.Tx, r Registration, now time.Time, ix *indexOps) (*Registration, error) {
	bk := tx.Bucket(bucketRegistrations)
	var old *Registration
	if v := bk.Get(r.MAC[:]); v != nil {
		if o, err := decodeRegistration(r.MAC[:], v); err == nil {
			old = &o
		}
	}
	if r.Created.IsZero() {
		if old != nil && !old.Created.IsZero() && old.ISP == r.ISP && old.CustomerID == r.CustomerID {
			r.Created = old.Created
		} else {
			r.Created = now
		}
	}
	if old != nil && (old.ISP != r.ISP || old.CustomerID != r.CustomerID) {
		if err := ix.delete(tx, deviceIndexKey(old.ISP, old.CustomerID, old.MAC)); err != nil {
			return old, err
		}
	}
	if err := bk.Put(r.MAC[:], encodeRegistration(&r)); err != nil {
		return old, err
	}
	if old == nil || old.ISP != r.ISP || old.CustomerID != r.CustomerID {
		if err := ix.insert(tx, deviceIndexKey(r.ISP, r.CustomerID, r.MAC)); err != nil {
			return old, err
		}
	}
	return old, s.changeAppend(tx, now, ChangeDevice, ChangePut, bytes.Clone(r.MAC[:]))
}

// regDelete deletes the registration of mac in tx with its index entry
// (through ix if not nil), appends the deletion to the change feed, and
// reports whether there was one. A corrupt stored value is deleted too
// (its index entry, which cannot be found, stays; readers skip it).
func (s *Store) regDelete(tx *bolt.Tx, mac MAC, now time.Time, ix *indexOps) (bool, error) {
	bk := tx.Bucket(bucketRegistrations)
	v := bk.Get(mac[:])
	if v == nil {
		return false, nil
	}
	if o, err := decodeRegistration(mac[:], v); err == nil {
		if err := ix.delete(tx, deviceIndexKey(o.ISP, o.CustomerID, mac)); err != nil {
			return true, err
		}
	}
	if err := bk.Delete(mac[:]); err != nil {
		return true, err
	}
	return true, s.changeAppend(tx, now, ChangeDevice, ChangeDelete, bytes.Clone(mac[:]))
}

// PutRegistration inserts or replaces the registration of r.MAC. A zero
// r.Updated is set to now; a zero r.Created keeps the stored one if r
// keeps its ISP and customer (now for a new MAC or a move). Durable on
// return.
func (s *Store) PutRegistration(r Registration) error {
	if err := validateRegistration(&r); err != nil {
		return fmt.Errorf("put registration %s: %w", macString(r.MAC), err)
	}
	now := time.Now()
	if r.Updated.IsZero() {
		r.Updated = now
	}
	err := s.updateWaking(func(tx *bolt.Tx) error {
		_, err := s.regPut(tx, r, now, nil)
		return err
	}, wakeChanges)
	if err != nil {
		return fmt.Errorf("put registration %s: %w", macString(r.MAC), err)
	}
	return nil
}

// DeleteRegistration removes the registration of mac and reports whether
// there was one. Durable on return.
func (s *Store) DeleteRegistration(mac MAC) (bool, error) {
	var found bool
	now := time.Now()
	err := s.updateWaking(func(tx *bolt.Tx) error {
		var err error
		found, err = s.regDelete(tx, mac, now, nil)
		return err
	}, wakeChanges)
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

// ForEachRegistration calls fn for every registration in MAC order, from
// one read transaction, without building the list (the start-up load of
// a million devices). The ISP, Access and Source strings are shared
// between registrations that have the same ones (fn may keep r's fields,
// not r). Corrupt values are skipped and reported together in the error,
// wrapping ErrCorrupt, after fn saw the others; an error from fn stops
// the walk and is returned.
func (s *Store) ForEachRegistration(fn func(r *Registration) error) error {
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		in := interner{}
		c := tx.Bucket(bucketRegistrations).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := decodeRegistration(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			r.ISP, r.Access, r.Source = in.get(r.ISP), in.get(r.Access), in.get(r.Source)
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return fmt.Errorf("registrations: %w", err)
	}
	return nil
}

// interner shares the few distinct strings of a field that repeats in
// every record (ISP, access, source names).
type interner map[string]string

func (in interner) get(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	if len(in) < 4096 {
		in[s] = s
	}
	return s
}

// CustomerSummary is what loading the registry needs of the customers.
type CustomerSummary struct {
	// PerISP counts the customers of each ISP.
	PerISP map[string]int
	// Suspended are the suspended customers.
	Suspended []CustomerKey
	// Registrations is the number of registrations (for sizing).
	Registrations int
}

// CustomerSummary counts the customers per ISP and lists the suspended
// ones, from one read transaction, decoding no more of each customer than
// its status (no list of every customer is built). Corrupt values are
// skipped and reported together in the error, wrapping ErrCorrupt, with
// the summary of the others.
func (s *Store) CustomerSummary() (CustomerSummary, error) {
	sum := CustomerSummary{PerISP: map[string]int{}}
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		sum.Registrations = tx.Bucket(bucketRegistrations).Stats().KeyN
		c := tx.Bucket(bucketCustomers).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			d := decoder{b: v}
			if ver := d.version(); d.err == nil && ver < 3 {
				d.fail(fmt.Errorf("format version %d has no customers", ver))
			}
			isp := d.take(d.uvarint())
			id := d.take(d.uvarint())
			d.take(d.uvarint()) // password hash
			status := d.take(d.uvarint())
			if d.err != nil || len(k) != len(isp)+1+len(id) || !bytes.HasPrefix(k, isp) || k[len(isp)] != 0 || !bytes.Equal(k[len(isp)+1:], id) {
				// The full decoder says what is wrong.
				if _, err := decodeCustomer(k, v); err != nil {
					bad = append(bad, err)
				} else {
					bad = append(bad, corrupt(bucketCustomers, k, errors.New("key does not match the value")))
				}
				continue
			}
			sum.PerISP[string(isp)]++
			if string(status) == StatusSuspended {
				sum.Suspended = append(sum.Suspended, CustomerKey{ISP: string(isp), ID: string(id)})
			}
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return sum, fmt.Errorf("customer summary: %w", err)
	}
	return sum, nil
}
