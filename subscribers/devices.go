package subscribers

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// DevicesOf returns the registrations (devices) of the customer (isp,
// customer), sorted by MAC, from the devices-by-customer index (a
// customer has few: no scan of the others). If some values are corrupt it
// returns the others together with an error wrapping ErrCorrupt for each
// bad one.
func (s *Store) DevicesOf(isp, customer string) ([]Registration, error) {
	if strings.IndexByte(isp, 0) >= 0 || strings.IndexByte(customer, 0) >= 0 {
		return nil, fmt.Errorf("devices of %s: %w: NUL in name", customerName(isp, customer), ErrInvalid)
	}
	prefix := deviceIndexKey(isp, customer, MAC{})
	prefix = prefix[:len(prefix)-6]
	var rs []Registration
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		indexedDevices(tx, prefix, nil, 0, &rs, &bad)
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return rs, fmt.Errorf("devices of %s: %w", customerName(isp, customer), err)
	}
	return rs, nil
}

// indexedDevices appends to *rs the registrations the devices-by-customer
// index names under prefix (ending in 0x00), after key from (nil: from
// the first), up to limit (<= 0: all), and to *bad an error for each
// malformed entry or corrupt value (stale entries are skipped: see
// indexedDevice), as it reads them: a read that faults on a damaged page
// (guardRead) leaves those read before. It returns the key the next page
// starts after, nil when none follows (pageScan).
func indexedDevices(tx *bolt.Tx, prefix, from []byte, limit int, rs *[]Registration, bad *[]error) []byte {
	regs := tx.Bucket(bucketRegistrations)
	return pageScan(tx.Bucket(bucketDeviceIndex).Cursor(), prefix, from, limit, func(k, _ []byte) bool {
		r, ok, err := indexedDevice(regs, k, prefix)
		if err != nil {
			*bad = append(*bad, err)
		}
		if ok {
			*rs = append(*rs, r)
		}
		return ok
	})
}

// indexedDevice reads the registration an index key k (under prefix, which
// ends in 0x00) names: ok is false for an entry that does not match its
// registration (left behind by a corrupt value), or that is malformed.
func indexedDevice(regs *bolt.Bucket, k, prefix []byte) (Registration, bool, error) {
	rest := k[len(prefix):]
	// rest is either the MAC (prefix ends after the customer) or
	// customer, 0x00, MAC (prefix ends after the ISP).
	if len(rest) < 6 || (len(rest) > 6 && rest[len(rest)-7] != 0) {
		return Registration{}, false, corrupt(bucketDeviceIndex, k, errors.New("key is not ISP, 0x00, customer, 0x00, MAC"))
	}
	mac := MAC(rest[len(rest)-6:])
	v := regs.Get(mac[:])
	if v == nil {
		return Registration{}, false, nil
	}
	r, err := decodeRegistration(mac[:], v)
	if err != nil {
		return Registration{}, false, err
	}
	if !bytes.Equal(deviceIndexKey(r.ISP, r.CustomerID, r.MAC), k) {
		return Registration{}, false, nil // stale
	}
	return r, true, nil
}

// Devices returns a page of up to limit registrations (devices; limit <= 0:
// all). With isp "" it lists every ISP's, ordered by MAC, and customer must
// be "" (ErrInvalid otherwise); the cursor is the last MAC of the page in
// hex (12 digits). With isp set it lists that ISP's devices from the
// devices-by-customer index (other ISPs' are not looked at), ordered by
// customer ID then MAC, only the customer's if customer is set; the cursor
// is opaque. after is the cursor a previous page returned ("" = from the
// start); next is that of the following page, "" when there is none (a
// page may end up empty when the devices after the cursor were deleted
// meanwhile). A malformed cursor, or one of another list, is ErrInvalid.
// Errors as DevicesOf.
func (s *Store) Devices(isp, customer, after string, limit int) (rs []Registration, next string, err error) {
	what := fmt.Sprintf("devices of ISP %q", isp)
	if isp == "" {
		what = "devices of every ISP"
	}
	if customer != "" {
		what = "devices of " + customerName(isp, customer)
	}
	var bad []error
	if isp == "" {
		if customer != "" {
			return nil, "", fmt.Errorf("%s: %w: a customer without its ISP", what, ErrInvalid)
		}
		var from []byte
		if after != "" {
			from, err = hex.DecodeString(after)
			if err != nil || len(from) != 6 {
				return nil, "", fmt.Errorf("%s: %w: bad cursor %q", what, ErrInvalid, after)
			}
		}
		err = s.view(func(tx *bolt.Tx) error {
			last := pageScan(tx.Bucket(bucketRegistrations).Cursor(), nil, from, limit, func(k, v []byte) bool {
				r, err := decodeRegistration(k, v)
				if err != nil {
					bad = append(bad, err)
					return false
				}
				rs = append(rs, r)
				return true
			})
			if last != nil {
				next = hex.EncodeToString(last)
			}
			return nil
		})
	} else {
		if strings.IndexByte(isp, 0) >= 0 || strings.IndexByte(customer, 0) >= 0 {
			return nil, "", fmt.Errorf("%s: %w: NUL in name", what, ErrInvalid)
		}
		prefix := append([]byte(isp), 0)
		if customer != "" {
			prefix = append(append(prefix, customer...), 0)
		}
		from, cerr := decodeCursor(after, prefix)
		if cerr != nil {
			return nil, "", fmt.Errorf("%s: %w", what, cerr)
		}
		err = s.view(func(tx *bolt.Tx) error {
			next = encodeCursor(indexedDevices(tx, prefix, from, limit, &rs, &bad))
			return nil
		})
	}
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return rs, next, fmt.Errorf("%s: %w", what, err)
	}
	return rs, next, nil
}
