package subscribers

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Binding is a lease an ISP granted to a subscriber, as ispmux relayed it.
// It is keyed by (Access, VLAN, MAC).
type Binding struct {
	MAC      MAC
	Access   string     // access port name
	VLAN     uint16     // subscriber VLAN on that port (0 = untagged)
	ISP      string     // ISP name
	IP       netip.Addr // leased address
	Circuit  string     // circuit-id sent to the ISP
	ServerID netip.Addr // the ISP server's real server identifier (option 54)
	Relay    netip.Addr // the ISP DHCP server address we relayed to
	Expires  time.Time  // lease end
	Updated  time.Time

	// The rest is what a later step needs to act for the subscriber
	// (release on its behalf, answer a renewal after a restart); schema 1
	// files did not keep it, so a migrated binding has it empty. Empty
	// byte fields read back as nil.

	ClientID  []byte        // option 61 as the client sent it (nil if none); at most 255 bytes
	Option82  []byte        // the relay agent information option ispmux sent the ISP for this lease (its value); at most 255 bytes
	Options   []byte        // the ISP ACK's options as received, raw DHCP TLVs (code, length, value), Option 82 stripped; at most 1500 bytes
	LeaseTime time.Duration // option 51 as the ISP granted it (0 if unknown)
	Customer  string        // the customer ID sent as subscriber-id ("" if none)
	// Boot is the ISP ACK's siaddr, sname and file fields (BootLen
	// bytes: 4, 64 and 128; the fields that carried options by option
	// 52 zeroed), nil when all were zero: a renewal ispmux answers
	// carries them as the ISP's ACK did (RFC 2131 table 3). Values
	// before format version 5 have none.
	Boot []byte
	// Since is when this binding began: the MAC's first ACK at this ISP
	// on this circuit with this client identifier, which the ACKs after
	// it carry over (renewals, a new address from the same ISP), as the
	// journal, restarts and backups keep the record. The client
	// identifier reclaim's age rule reads it (dhcpproxy, mayReclaim):
	// unlike the registration's Created, a move of the device to another
	// customer does not restart it. Zero: not known (a value before
	// format version 6, and the ACKs after it, which carry the zero
	// over). The store keeps what it is given.
	Since time.Time
}

// BootLen is the length of Binding.Boot: a DHCP message's siaddr, sname
// and file fields.
const BootLen = 4 + 64 + 128

// Clone returns b with its own copies of its strings and bytes (of a
// binding ForEachBindingBorrowed lent).
func (b *Binding) Clone() Binding {
	c := *b
	c.Access, c.ISP, c.Circuit, c.Customer = strings.Clone(b.Access), strings.Clone(b.ISP), strings.Clone(b.Circuit), strings.Clone(b.Customer)
	c.ClientID, c.Option82, c.Options, c.Boot = bytes.Clone(b.ClientID), bytes.Clone(b.Option82), bytes.Clone(b.Options), bytes.Clone(b.Boot)
	return c
}

func validAccess(access string) error {
	switch {
	case access == "":
		return fmt.Errorf("%w: empty access port name", ErrInvalid)
	case len(access) > maxString:
		return fmt.Errorf("%w: access port name is %d bytes (max %d)", ErrInvalid, len(access), maxString)
	case strings.IndexByte(access, 0) >= 0:
		return fmt.Errorf("%w: access port name contains NUL", ErrInvalid)
	}
	return nil
}

func validateBinding(b *Binding) error {
	if err := validAccess(b.Access); err != nil {
		return err
	}
	if !b.IP.IsValid() {
		return fmt.Errorf("%w: no IP address", ErrInvalid)
	}
	if b.Expires.IsZero() {
		return fmt.Errorf("%w: no lease end (Expires)", ErrInvalid)
	}
	if len(b.ISP) > maxString || len(b.Circuit) > maxString || len(b.Customer) > maxString {
		return fmt.Errorf("%w: ISP, circuit-id or customer ID longer than %d bytes", ErrInvalid, maxString)
	}
	for _, f := range []struct {
		name string
		v    []byte
		max  int
	}{
		{"client identifier", b.ClientID, maxClientID},
		{"Option 82", b.Option82, maxOption82},
		{"ACK options", b.Options, maxOptions},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("%w: %s is %d bytes (max %d)", ErrInvalid, f.name, len(f.v), f.max)
		}
	}
	if b.LeaseTime < 0 {
		return fmt.Errorf("%w: negative lease time %v", ErrInvalid, b.LeaseTime)
	}
	if len(b.Boot) != 0 && len(b.Boot) != BootLen {
		return fmt.Errorf("%w: boot fields are %d bytes (want %d or none)", ErrInvalid, len(b.Boot), BootLen)
	}
	return nil
}

// CommitBinding inserts or replaces the binding of (b.Access, b.VLAN,
// b.MAC). It returns only once the binding is fsynced (grouped with the
// concurrent writes, see the package doc), so the caller may then ACK.
// A zero b.Updated is set to now.
func (s *Store) CommitBinding(b Binding) error {
	if err := validateBinding(&b); err != nil {
		return fmt.Errorf("commit binding %s: %w", bindingName(b.Access, b.VLAN, b.MAC), err)
	}
	if b.Updated.IsZero() {
		b.Updated = time.Now()
	}
	rec := &jrec{key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b)}
	put := bindingPut(rec)
	if err := s.submit(&call{fn: put, rec: rec}); err != nil {
		return fmt.Errorf("commit binding %s: %w", bindingName(b.Access, b.VLAN, b.MAC), err)
	}
	return nil
}

// CommitBindingEvent is CommitBinding and AddEvent in one write: the
// binding and the event recording it (bound, renewed) become durable
// together, for one fsync instead of two.
func (s *Store) CommitBindingEvent(b Binding, e Event) (Event, error) {
	name := func() string { return bindingName(b.Access, b.VLAN, b.MAC) } // for errors only
	if err := validateBinding(&b); err != nil {
		return Event{}, fmt.Errorf("commit binding %s: %w", name(), err)
	}
	if b.Updated.IsZero() {
		b.Updated = time.Now()
	}
	if err := prepareEvent(&e); err != nil {
		return Event{}, err
	}
	rec := &jrec{key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b), ev: &e, evVal: encodeEvent(&e)}
	putB := bindingPut(rec)
	putE := s.eventPutVal(&e, rec.evVal)
	err := s.submit(&call{fn: func(tx *bolt.Tx) error {
		if err := putB(tx); err != nil {
			return err
		}
		return putE(tx)
	}, rec: rec, wakes: wakeEvents})
	if err != nil {
		return Event{}, fmt.Errorf("commit binding %s with event %s: %w", name(), e.Kind, err)
	}
	return e, nil
}

// bindingPut returns the transaction step that stores r's binding, for
// a write the journal does not take.
func bindingPut(r *jrec) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBindings).Put(r.key, r.val)
	}
}

// DeleteBinding removes the binding and reports whether there was one.
// Durable on return.
func (s *Store) DeleteBinding(access string, vlan uint16, mac MAC) (bool, error) {
	if err := validAccess(access); err != nil {
		return false, fmt.Errorf("delete binding %s: %w", bindingName(access, vlan, mac), err)
	}
	del := bindingDelete(access, vlan, mac)
	var found bool
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		found, err = del(tx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete binding %s: %w", bindingName(access, vlan, mac), err)
	}
	return found, nil
}

// bindingDelete returns the transaction step that deletes the binding of
// (access, vlan, mac) (validated) and reports whether there was one.
func bindingDelete(access string, vlan uint16, mac MAC) func(tx *bolt.Tx) (bool, error) {
	key := bindingKey(access, vlan, mac)
	return func(tx *bolt.Tx) (bool, error) {
		bk := tx.Bucket(bucketBindings)
		if bk.Get(key) == nil {
			return false, nil
		}
		return true, bk.Delete(key)
	}
}

// Binding returns the binding of (access, vlan, mac), or ErrNotFound.
func (s *Store) Binding(access string, vlan uint16, mac MAC) (Binding, error) {
	if err := validAccess(access); err != nil {
		return Binding{}, fmt.Errorf("binding %s: %w", bindingName(access, vlan, mac), err)
	}
	key := bindingKey(access, vlan, mac)
	var b Binding
	if v, ok := s.pendingBinding(key); ok {
		b, err := decodeBinding(key, v)
		if err != nil {
			return Binding{}, fmt.Errorf("binding %s: %w", bindingName(access, vlan, mac), err)
		}
		return b, nil
	}
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBindings).Get(key)
		if v == nil {
			return ErrNotFound
		}
		var err error
		b, err = decodeBinding(key, v)
		return err
	})
	if err != nil {
		return Binding{}, fmt.Errorf("binding %s: %w", bindingName(access, vlan, mac), err)
	}
	return b, nil
}

// Bindings returns every binding, sorted by access port, VLAN, MAC (the
// reload at start-up). If some values are corrupt it returns the others
// together with an error wrapping ErrCorrupt for each bad one.
func (s *Store) Bindings() ([]Binding, error) {
	return s.bindings(nil)
}

// BindingsOn returns the bindings of one access port, like Bindings.
func (s *Store) BindingsOn(access string) ([]Binding, error) {
	if err := validAccess(access); err != nil {
		return nil, fmt.Errorf("bindings on %s: %w", access, err)
	}
	return s.bindings(append([]byte(access), 0))
}

// ForEachBinding calls fn with every binding, sorted by access port, VLAN,
// MAC, decoding one at a time (the restore at start-up: nothing of the
// whole set is held at once). fn runs inside the store's read
// transaction: it must not write to the store. An error from fn stops the
// walk and is returned; corrupt values are skipped and reported together
// (wrapping ErrCorrupt) after the walk, like Bindings.
func (s *Store) ForEachBinding(fn func(Binding) error) error {
	return s.forEachBinding(false, func(b *Binding) error { return fn(*b) })
}

// ForEachBindingBorrowed is ForEachBinding without the copies: the
// binding's strings and byte slices alias the store's memory map, or for
// a binding still pending in the journal its record, are valid only
// until fn returns and must not be written (Clone keeps one). At a million bindings the
// copies were 7 allocations each, ~0.4 CPU-s of a restart.
func (s *Store) ForEachBindingBorrowed(fn func(*Binding) error) error {
	return s.forEachBinding(true, fn)
}

func (s *Store) forEachBinding(borrow bool, fn func(*Binding) error) error {
	var bad []error
	err := s.viewBindings(func(c *bindingCursor) error {
		var b Binding // one for the walk: fn gets its address
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var err error
			b, err = decodeBindingFrom(k, v, borrow)
			if err != nil {
				if borrow {
					// The error may quote the value: decode it again,
					// copying, for an error that outlives the walk.
					_, err = decodeBinding(k, v)
				}
				bad = append(bad, err)
				continue
			}
			if err := fn(&b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return fmt.Errorf("bindings: %w", err)
	}
	return nil
}

func (s *Store) bindings(prefix []byte) ([]Binding, error) {
	var bs []Binding
	var bad []error
	err := s.viewBindings(func(c *bindingCursor) error {
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			b, err := decodeBinding(k, v)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			bs = append(bs, b)
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return bs, fmt.Errorf("bindings: %w", err)
	}
	return bs, nil
}

// BindingsPage returns a page of up to limit bindings (limit <= 0: all),
// ordered by access port, VLAN, MAC, of every ISP (isp "") or of one ISP.
// The bindings are not indexed by ISP: a page of one ISP scans the
// bindings in key order until it has limit of that ISP's (or reaches the
// end), looking at the other ISPs' on the way, so its cost is that of the
// bindings it passes, not of the page (the last page may come back empty,
// with next "", when no binding of the ISP follows the cursor). after is the cursor a previous page returned ("" = from the
// start, opaque); next is that of the following page, "" when there is
// none. A malformed cursor is ErrInvalid. If some values are corrupt it
// returns the others together with an error wrapping ErrCorrupt for each
// bad one.
func (s *Store) BindingsPage(isp, after string, limit int) (bs []Binding, next string, err error) {
	from, err := decodeCursor(after, nil)
	if err == nil && from != nil && !isBindingKey(from) {
		err = fmt.Errorf("%w: bad cursor %q", ErrInvalid, after)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", bindingsOf(isp), err)
	}
	var bad []error
	err = s.viewBindings(func(c *bindingCursor) error {
		next = encodeCursor(pageScan(c, nil, from, limit, func(k, v []byte) bool {
			b, err := decodeBinding(k, v)
			if err != nil {
				bad = append(bad, err)
				return false
			}
			if isp != "" && b.ISP != isp {
				return false
			}
			bs = append(bs, b)
			return true
		}))
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return bs, next, fmt.Errorf("%s: %w", bindingsOf(isp), err)
	}
	return bs, next, nil
}

// isBindingKey reports whether k has the shape of a bindingKey: an access
// name (not empty, no NUL), a NUL, a VLAN and a MAC. A page's cursor is
// one (the last key it scanned); other bytes are a bad cursor, which the
// bindings' keys, with no ISP prefix, cannot tell by their prefix as
// decodeCursor tells the customers' and devices'.
func isBindingKey(k []byte) bool {
	n := len(k) - 1 - 2 - 6
	return n > 0 && k[n] == 0 && bytes.IndexByte(k[:n], 0) < 0
}

// bindingsOf names the list of isp's bindings in an error ("" = every
// ISP's).
func bindingsOf(isp string) string {
	if isp == "" {
		return "bindings of every ISP"
	}
	return fmt.Sprintf("bindings of ISP %q", isp)
}
