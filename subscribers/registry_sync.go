package subscribers

// A configuration sync's side of the registrations: making the set of one
// source's registrations equal a list in one transaction (a config load or
// reload: SyncRegistrations and its variants, the diff they report, the
// customers a sync's devices left), and the customer lookups such a sync
// makes (CheckCustomers).

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SyncRegistrations makes the set of registrations whose Source is source
// equal rs, in one durable transaction (a config reload). Every entry of rs
// gets Source = source; an entry whose MAC is registered by another source
// is taken over by this one. Entries that did not change keep their stored
// Updated and Created times; changed and new ones get their Updated (now,
// if zero) and keep the stored Created if they keep their ISP and
// customer (now for a new MAC or a move, if zero: Registration.Created).
// added counts MACs that had no registration from source before, changed
// those whose registration from source was rewritten, removed those that
// were deleted. Registrations from other sources are untouched. A corrupt
// stored registration is overwritten if rs has its MAC, and otherwise left
// alone. Every put and delete maintains the devices-by-customer index and
// is appended to the change feed. See SyncRegistrationsDiff for its cost.
func (s *Store) SyncRegistrations(source string, rs []Registration) (added, changed, removed int, err error) {
	d, err := s.SyncRegistrationsDiff(source, rs, false)
	return d.Added, d.Changed, d.Removed, err
}

// SyncDiff says what SyncRegistrationsDiff wrote.
type SyncDiff struct {
	Added, Changed, Removed int
	// Events are the sync's events (SyncOptions.Events), as stored, with
	// Seq: written in the sync's own transaction.
	Events []Event
	// Left are the customers that devices of this source left in this
	// sync (removed, or moved to another customer), together with those
	// an earlier sync recorded and ClearSyncLeft has not cleared yet (a
	// crash came between that sync and its caller's follow-up). Recorded
	// in the sync's transaction, sorted, each once.
	Left []CustomerKey
	// Puts are the registrations written, sorted by MAC, each with the
	// one it replaced (Old is nil for a new MAC or a corrupt value).
	Puts []RegistrationChange
	// Deleted are the registrations removed, as they were, by MAC.
	Deleted []Registration
	// Held are the entries of rs left alone because another source
	// registered their MAC (keepOthers only): New is the entry, Old the
	// stored registration.
	Held []RegistrationChange
}

// RegistrationChange is a registration and the stored one it concerns.
type RegistrationChange struct {
	New Registration
	Old *Registration
}

// SyncRegistrationsDiff is SyncRegistrations reporting what it wrote, so
// that a caller can publish the changes alone instead of reloading
// everything. With keepOthers an entry whose MAC another source registered
// is not taken over but returned in Held (a config reload never overrides
// the API).
//
// Cost: rs is sorted once (O(k log k)); one cursor pass over the stored
// registrations is merged with it (O(n), decoding each); the transaction
// then writes in key order (the deletions, then the puts, each sorted by
// MAC; the index entries sorted at the end), which keeps a large sync
// linear: bbolt splits and rebalances each page once instead of the pages
// being visited in random order (BenchmarkSyncRegistrations). The writes
// are one transaction (a reload is all or nothing): its size is the
// number of changes, not bounded.
func (s *Store) SyncRegistrationsDiff(source string, rs []Registration, keepOthers bool) (SyncDiff, error) {
	return s.SyncRegistrationsWith(source, rs, SyncOptions{KeepOthers: keepOthers})
}

// SyncOptions are SyncRegistrationsWith's.
type SyncOptions struct {
	// KeepOthers: an entry whose MAC another source registered is held
	// (SyncDiff.Held), not taken over.
	KeepOthers bool
	// Events, if set, returns the events of the diff, written in the
	// sync's transaction: a crash loses the changes and their events
	// together or neither.
	Events func(SyncDiff) []Event
	// RecordLeft: the customers the devices left (SyncDiff.Left) are
	// recorded in the sync's transaction until a TenantWrite with
	// ClearSyncLeft = source clears them, so that a caller whose
	// follow-up (removing such a customer) is cut short by a crash gets
	// them again from its next sync.
	RecordLeft bool
}

// keySyncLeft is the meta key of source's recorded SyncDiff.Left.
func keySyncLeft(source string) []byte { return []byte("sync-left/" + source) }

// SyncRegistrationsWith is SyncRegistrationsDiff with options: the sync's
// events and the customers its devices left are written in its own
// transaction.
func (s *Store) SyncRegistrationsWith(source string, rs []Registration, o SyncOptions) (SyncDiff, error) {
	keepOthers := o.KeepOthers
	now := time.Now()
	want := make([]Registration, len(rs))
	for i := range rs {
		r := rs[i]
		r.Source = source
		if err := validateRegistration(&r); err != nil {
			return SyncDiff{}, fmt.Errorf("sync registrations %q: %s: %w", source, macString(r.MAC), err)
		}
		if r.Updated.IsZero() {
			r.Updated = now
		}
		want[i] = r
	}
	slices.SortFunc(want, func(a, b Registration) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	for i := 1; i < len(want); i++ {
		if want[i].MAC == want[i-1].MAC {
			return SyncDiff{}, fmt.Errorf("sync registrations %q: %w: MAC %s listed twice", source, ErrInvalid, macString(want[i].MAC))
		}
	}
	var d SyncDiff
	wakes := wakeChanges
	if o.Events != nil {
		wakes |= wakeEvents
	}
	err := s.updateWaking(func(tx *bolt.Tx) error {
		d = SyncDiff{}
		bk := tx.Bucket(bucketRegistrations)
		// One pass over the stored registrations, merged with want (both
		// sorted by MAC): which to delete, and what each wanted one is.
		type put struct {
			r     *Registration
			old   *Registration
			added bool
		}
		var puts []put
		j := 0
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			for j < len(want) && bytes.Compare(want[j].MAC[:], k) < 0 {
				puts = append(puts, put{&want[j], nil, true}) // new MAC
				j++
			}
			if j < len(want) && bytes.Equal(want[j].MAC[:], k) {
				w := &want[j]
				j++
				old, err := decodeRegistration(k, v)
				switch {
				case err != nil:
					puts = append(puts, put{w, nil, true})
				case old.Source != source && keepOthers:
					d.Held = append(d.Held, RegistrationChange{New: *w, Old: &old})
				case old.Source != source:
					puts = append(puts, put{w, &old, true})
				case sameRegistration(&old, w):
					// unchanged: keep its times, no write
				default:
					puts = append(puts, put{w, &old, false})
				}
				continue
			}
			// Not wanted: only its source matters, read without copying
			// (a reload of a few entries walks a million of these).
			if !sourceIs(v, source) {
				continue
			}
			old, err := decodeRegistration(k, v)
			if err == nil && old.Source == source {
				d.Deleted = append(d.Deleted, old)
			}
		}
		for ; j < len(want); j++ {
			puts = append(puts, put{&want[j], nil, true})
		}
		var ix indexOps
		for _, o := range d.Deleted {
			if _, err := s.regDelete(tx, o.MAC, now, &ix); err != nil {
				return err
			}
			d.Removed++
		}
		d.Puts = make([]RegistrationChange, 0, len(puts))
		for _, p := range puts {
			if _, err := s.regPut(tx, *p.r, now, &ix); err != nil {
				return err
			}
			if p.added {
				d.Added++
			} else {
				d.Changed++
			}
			d.Puts = append(d.Puts, RegistrationChange{New: *p.r, Old: p.old})
		}
		if err := ix.apply(tx); err != nil {
			return err
		}
		if o.RecordLeft {
			if err := recordLeft(tx, source, &d); err != nil {
				return err
			}
		}
		if o.Events != nil {
			d.Events = o.Events(d)
			for i := range d.Events {
				if err := prepareEvent(&d.Events[i]); err != nil {
					return err
				}
				if err := s.eventPut(&d.Events[i])(tx); err != nil {
					return err
				}
			}
		}
		return nil
	}, wakes)
	if err != nil {
		return SyncDiff{}, fmt.Errorf("sync registrations %q: %w", source, err)
	}
	return d, nil
}

// recordLeft sets d.Left to the customers d's devices left (removed, or
// moved to another customer or ISP) and those source's record holds, and
// stores the union as the record. Linear in the changes and the record.
func recordLeft(tx *bolt.Tx, source string, d *SyncDiff) error {
	set := map[CustomerKey]bool{}
	meta := tx.Bucket(bucketMeta)
	damaged := false
	if v := meta.Get(keySyncLeft(source)); v != nil {
		// The record is a hint (a crashed sync's follow-up): one that
		// does not decode is dropped and rewritten, rather than failing
		// every sync (start-up and reloads) for ever.
		ks, err := decodeCustomerKeys(v)
		damaged = err != nil
		for _, k := range ks {
			set[k] = true
		}
	}
	add := func(isp, id string) {
		if id != "" {
			set[CustomerKey{ISP: isp, ID: id}] = true
		}
	}
	for _, o := range d.Deleted {
		add(o.ISP, o.CustomerID)
	}
	for _, p := range d.Puts {
		if p.Old != nil && (p.Old.ISP != p.New.ISP || p.Old.CustomerID != p.New.CustomerID) {
			add(p.Old.ISP, p.Old.CustomerID)
		}
	}
	if len(set) == 0 {
		if damaged {
			return meta.Delete(keySyncLeft(source))
		}
		return nil
	}
	d.Left = make([]CustomerKey, 0, len(set))
	for k := range set {
		d.Left = append(d.Left, k)
	}
	slices.SortFunc(d.Left, func(a, b CustomerKey) int { return cmp.Or(cmp.Compare(a.ISP, b.ISP), cmp.Compare(a.ID, b.ID)) })
	return meta.Put(keySyncLeft(source), encodeCustomerKeys(d.Left))
}

// encodeCustomerKeys encodes ks: for each, the ISP and the ID, each a
// uvarint length and its bytes.
func encodeCustomerKeys(ks []CustomerKey) []byte {
	var b []byte
	for _, k := range ks {
		b = binary.AppendUvarint(b, uint64(len(k.ISP)))
		b = append(b, k.ISP...)
		b = binary.AppendUvarint(b, uint64(len(k.ID)))
		b = append(b, k.ID...)
	}
	return b
}

// decodeCustomerKeys decodes encodeCustomerKeys.
func decodeCustomerKeys(b []byte) ([]CustomerKey, error) {
	var ks []CustomerKey
	str := func() (string, bool) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return "", false
		}
		v := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return v, true
	}
	for len(b) > 0 {
		isp, ok1 := str()
		id, ok2 := str()
		if !ok1 || !ok2 {
			return nil, errors.New("customer keys: truncated")
		}
		ks = append(ks, CustomerKey{ISP: isp, ID: id})
	}
	return ks, nil
}

// sourceIs reports whether the stored registration v has source source,
// reading the fields in place (false if v does not decode: a corrupt
// value is left alone).
func sourceIs(v []byte, source string) bool {
	d := decoder{b: v}
	d.version()
	d.mac()
	d.u8() // flags
	for range 3 {
		d.take(d.uvarint()) // customer ID, ISP, access
	}
	src := d.take(d.uvarint())
	return d.err == nil && string(src) == source
}

// CustomerCheck is what CheckCustomers found of a list of customer keys.
type CustomerCheck struct {
	// Missing are the keys with no customer record, in key order.
	Missing []CustomerKey
	// Limits are the device limits of the keys whose record comes from
	// another source than the one asked about (nil when there are none).
	Limits map[CustomerKey]int
}

// CheckCustomers looks keys up in one read transaction, in key order (a
// configuration sync checks every customer its file names): which have
// no customer record, and the device limits of those whose record comes
// from another source than source (the API's customers, for a sync of
// the configuration's devices).
func (s *Store) CheckCustomers(keys []CustomerKey, source string) (CustomerCheck, error) {
	ks := slices.Clone(keys)
	slices.SortFunc(ks, func(a, b CustomerKey) int {
		if c := strings.Compare(a.ISP, b.ISP); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var out CustomerCheck
	err := s.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCustomers)
		for _, k := range ks {
			key := customerKey(k.ISP, k.ID)
			v := bk.Get(key)
			if v == nil {
				out.Missing = append(out.Missing, k)
				continue
			}
			c, err := decodeCustomerOf(key, v, true) // read here only
			if err != nil {
				return err
			}
			if c.Source != source {
				if out.Limits == nil {
					out.Limits = map[CustomerKey]int{}
				}
				out.Limits[k] = c.DeviceLimit
			}
		}
		return nil
	})
	if err != nil {
		return CustomerCheck{}, fmt.Errorf("check customers: %w", err)
	}
	return out, nil
}

// sameRegistration compares everything but Updated and Created.
func sameRegistration(a, b *Registration) bool {
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	x.Created, y.Created = time.Time{}, time.Time{}
	return x == y
}
