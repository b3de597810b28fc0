package subscribers

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Customer statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// MaxCustomerID is the longest customer ID, in bytes (it is sent as the
// Option 82 subscriber-id sub-option, whose length is one byte).
const MaxCustomerID = 255

// Customer is an ISP's customer, the record of truth (the tenants package
// is its only writer). Its key is (ISP, ID).
type Customer struct {
	ISP          string // the ISP (tenant); no NUL
	ID           string // customer ID, unique per ISP, 1..MaxCustomerID bytes, no NUL
	PasswordHash string // PHC string ("" = cannot be claimed)
	Status       string // StatusActive or StatusSuspended
	DeviceLimit  int    // >= 0
	Source       string // SourceAPI or SourceConfig
	// Created is kept from the stored customer when zero (now for a new
	// one); Updated is set to now when zero.
	Created, Updated time.Time
}

// CustomerKey names a customer.
type CustomerKey struct{ ISP, ID string }

func validateCustomerKey(isp, id string) error {
	switch {
	case isp == "" || len(isp) > maxString:
		return fmt.Errorf("%w: ISP name is %d bytes (want 1..%d)", ErrInvalid, len(isp), maxString)
	case strings.IndexByte(isp, 0) >= 0:
		return fmt.Errorf("%w: ISP name contains NUL", ErrInvalid)
	case id == "" || len(id) > MaxCustomerID:
		return fmt.Errorf("%w: customer ID is %d bytes (want 1..%d)", ErrInvalid, len(id), MaxCustomerID)
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("%w: customer ID contains NUL", ErrInvalid)
	}
	return nil
}

func validateCustomer(c *Customer) error {
	if err := validateCustomerKey(c.ISP, c.ID); err != nil {
		return err
	}
	switch c.Status {
	case StatusActive, StatusSuspended:
	default:
		return fmt.Errorf("%w: customer status %q (want %q or %q)", ErrInvalid, c.Status, StatusActive, StatusSuspended)
	}
	if c.DeviceLimit < 0 || c.DeviceLimit > 1<<20 {
		return fmt.Errorf("%w: device limit %d out of range", ErrInvalid, c.DeviceLimit)
	}
	if c.Source == "" || len(c.Source) > maxString {
		return fmt.Errorf("%w: customer source is %d bytes (want 1..%d)", ErrInvalid, len(c.Source), maxString)
	}
	if len(c.PasswordHash) > maxString {
		return fmt.Errorf("%w: password hash is %d bytes (max %d)", ErrInvalid, len(c.PasswordHash), maxString)
	}
	return nil
}

func customerName(isp, id string) string { return fmt.Sprintf("%q of ISP %q", id, isp) }

// customerPut stores c (validated) in tx, keeping the stored Created when
// c.Created is zero (now for a new one), and appends it to the change
// feed. Idempotent.
func (s *Store) customerPut(tx *bolt.Tx, c Customer, now time.Time) error {
	bk := tx.Bucket(bucketCustomers)
	key := customerKey(c.ISP, c.ID)
	if c.Updated.IsZero() {
		c.Updated = now
	}
	if c.Created.IsZero() {
		c.Created = now
		if v := bk.Get(key); v != nil {
			if old, err := decodeCustomer(key, v); err == nil && !old.Created.IsZero() {
				c.Created = old.Created
			}
		}
	}
	if err := bk.Put(key, encodeCustomer(&c)); err != nil {
		return err
	}
	return s.changeAppend(tx, now, ChangeCustomer, ChangePut, key)
}

// customerDelete deletes the customer (isp, id) in tx if it is there (and
// appends that to the change feed), reporting whether it was.
func (s *Store) customerDelete(tx *bolt.Tx, isp, id string, now time.Time) (bool, error) {
	bk := tx.Bucket(bucketCustomers)
	key := customerKey(isp, id)
	if bk.Get(key) == nil {
		return false, nil
	}
	if err := bk.Delete(key); err != nil {
		return true, err
	}
	return true, s.changeAppend(tx, now, ChangeCustomer, ChangeDelete, key)
}

// Customer returns the customer id of isp, or ErrNotFound.
func (s *Store) Customer(isp, id string) (Customer, error) {
	if err := validateCustomerKey(isp, id); err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", customerName(isp, id), err)
	}
	key := customerKey(isp, id)
	var c Customer
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCustomers).Get(key)
		if v == nil {
			return ErrNotFound
		}
		var err error
		c, err = decodeCustomer(key, v)
		return err
	})
	if err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", customerName(isp, id), err)
	}
	return c, nil
}

// Customers returns a page of up to limit customers (limit <= 0: all) of
// isp, ordered by ID, or of every ISP if isp is "" (ordered by ISP, then
// ID). after is the cursor a previous page returned ("" = from the
// start); next is the cursor of the following page, "" when there is none.
// Cursors are opaque (URL-safe) strings, valid across writes: a page
// starts after the last customer of the previous one, even if that one
// was deleted meanwhile; a malformed cursor, or one of another ISP, is
// ErrInvalid. If some values are corrupt it returns the others together
// with an error wrapping ErrCorrupt for each bad one.
func (s *Store) Customers(isp, after string, limit int) (cs []Customer, next string, err error) {
	var prefix []byte
	if isp != "" {
		if strings.IndexByte(isp, 0) >= 0 {
			return nil, "", fmt.Errorf("customers of %q: %w: ISP name contains NUL", isp, ErrInvalid)
		}
		prefix = append([]byte(isp), 0)
	}
	from, err := decodeCursor(after, prefix)
	if err != nil {
		return nil, "", fmt.Errorf("customers of %q: %w", isp, err)
	}
	var bad []error
	err = s.view(func(tx *bolt.Tx) error {
		next = encodeCursor(pageScan(tx.Bucket(bucketCustomers).Cursor(), prefix, from, limit, func(k, v []byte) bool {
			c, err := decodeCustomer(k, v)
			if err != nil {
				bad = append(bad, err)
				return false
			}
			cs = append(cs, c)
			return true
		}))
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return cs, next, fmt.Errorf("customers of %q: %w", isp, err)
	}
	return cs, next, nil
}

// AllCustomers returns every customer of every ISP, ordered by ISP then
// ID, from one read transaction (the start-up load). Errors as Customers.
func (s *Store) AllCustomers() ([]Customer, error) {
	var cs []Customer
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCustomers)
		cs = make([]Customer, 0, bk.Stats().KeyN)
		return bk.ForEach(func(k, v []byte) error {
			c, err := decodeCustomer(k, v)
			if err != nil {
				bad = append(bad, err)
				return nil
			}
			cs = append(cs, c)
			return nil
		})
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return cs, fmt.Errorf("all customers: %w", err)
	}
	return cs, nil
}

// Cursors of the paged lists are the last key of the page, base64url
// (no padding): opaque to callers, safe in a URL.

func encodeCursor(key []byte) string {
	if key == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(key)
}

// decodeCursor decodes cursor ("" = nil, the start), which must be a key
// under prefix.
func decodeCursor(cursor string, prefix []byte) ([]byte, error) {
	if cursor == "" {
		return nil, nil
	}
	k, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(k) == 0 || !bytes.HasPrefix(k, prefix) {
		return nil, fmt.Errorf("%w: bad cursor %q", ErrInvalid, cursor)
	}
	return k, nil
}

// seekCursor is what pageScan needs of a cursor: a *bolt.Cursor, or a
// bindingCursor (bbolt's bindings merged with the pending ones).
type seekCursor interface {
	Seek(k []byte) ([]byte, []byte)
	Next() ([]byte, []byte)
}

// pageScan walks the keys under prefix after from (all of them if from is
// nil), calling take for each until it has accepted limit (limit <= 0: no
// limit). take reports whether it accepted the item (a skipped one, e.g.
// corrupt or filtered out, does not count). It returns the key the next
// page starts after (the last key looked at) if a key under prefix
// follows it, else nil.
func pageScan(c seekCursor, prefix, from []byte, limit int, take func(k, v []byte) bool) []byte {
	var k, v []byte
	if from == nil {
		k, v = c.Seek(prefix)
	} else {
		k, v = c.Seek(from)
		if k != nil && bytes.Equal(k, from) {
			k, v = c.Next()
		}
	}
	n := 0
	var last []byte
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if limit > 0 && n >= limit {
			return last
		}
		if take(k, v) {
			n++
		}
		last = k
	}
	return nil
}
