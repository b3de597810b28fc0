package subscribers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unsafe"
)

// formatVersion is the first byte of every value the store writes.
// Older values are still decoded, their missing fields reading as zero:
// version 1 (schema 1) bindings and events without the fields version 2
// added, version 2 registrations without Created and events without Actor
// and RequestID (version 3), bindings before version 5 without Boot,
// before version 6 without Since. Open rewrites schema-1 values in the
// current format when it migrates such a file (migrate.go); version 2 to
// 5 values stay as they are until they are next written.
const formatVersion = 6

// formatV1 is the format of schema-1 files; formatV2 of schema-2 files.
const (
	formatV1 = 1
	formatV2 = 2
)

// Decoding errors, wrapped in a CorruptError by the callers.
var (
	errShort    = errors.New("value truncated")
	errTrailing = errors.New("trailing bytes after value")
)

// encoder appends fields to a buffer.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) mac(m MAC)    { e.b = append(e.b, m[:]...) }
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) addr(a netip.Addr) {
	// AppendBinary: 0 bytes (invalid), 4, 16, or 16+zone; appended in
	// place (MarshalBinary allocated a slice per address).
	n := 0
	if a.IsValid() {
		n = a.BitLen()/8 + len(a.Zone())
	}
	e.b = binary.AppendUvarint(e.b, uint64(n))
	e.b, _ = a.AppendBinary(e.b)
}
func (e *encoder) bytes(v []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) time(t time.Time) {
	e.b = binary.AppendVarint(e.b, t.Unix())
	e.b = binary.AppendUvarint(e.b, uint64(t.Nanosecond()))
}

// decoder consumes fields; the first failure sticks in err and every later
// read returns zero values, so a decode function checks err once at the end.
type decoder struct {
	b   []byte
	err error
	// borrow: str and bytes alias b (bbolt's memory map) instead of
	// copying it; what is decoded is valid only inside the transaction
	// (ForEachBindingBorrowed).
	borrow bool
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) mac() (m MAC) {
	copy(m[:], d.take(6))
	return m
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	v := d.take(d.uvarint())
	if d.borrow && len(v) > 0 {
		return unsafe.String(&v[0], len(v))
	}
	return string(v)
}

// bytes returns a copy (the decoder reads bbolt's memory map), nil for an
// empty field.
func (d *decoder) bytes() []byte {
	v := d.take(d.uvarint())
	if len(v) == 0 {
		return nil
	}
	if d.borrow {
		return v[:len(v):len(v)]
	}
	return append([]byte(nil), v...)
}

func (d *decoder) addr() netip.Addr {
	v := d.take(d.uvarint())
	if d.err != nil {
		return netip.Addr{}
	}
	var a netip.Addr
	if err := a.UnmarshalBinary(v); err != nil {
		d.fail(fmt.Errorf("address: %w", err))
	}
	return a
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail(fmt.Errorf("time: nanoseconds %d out of range", nsec))
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	return t
}

// NewerFormatError is a record written by a newer ispmux, in a format
// version this one does not read: a rollback without the backup taken
// before the upgrade.
type NewerFormatError struct{ Version byte }

func (e *NewerFormatError) Error() string {
	return fmt.Sprintf("written by a newer ispmux (record format version %d; this one reads %d to %d): run that ispmux, "+
		"or restore the backup taken before the upgrade (docs/OPERATIONS.md, upgrades and rollbacks)", e.Version, formatV1, formatVersion)
}

// version reads the format version: formatV1 to formatVersion.
func (d *decoder) version() byte {
	v := d.u8()
	switch {
	case d.err != nil:
	case v > formatVersion:
		d.fail(&NewerFormatError{Version: v})
	case v < formatV1:
		d.fail(fmt.Errorf("format version %d, want %d to %d", v, formatV1, formatVersion))
	}
	return v
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	return d.err
}

// Registration: version, MAC, flags (bit 0: Blocked), CustomerID, ISP,
// Access, Source, Updated; then (version 3) Created.

const flagBlocked = 1 << 0

func encodeRegistration(r *Registration) []byte {
	e := encoder{b: make([]byte, 0, 64)}
	e.u8(formatVersion)
	e.mac(r.MAC)
	var flags byte
	if r.Blocked {
		flags |= flagBlocked
	}
	e.u8(flags)
	e.str(r.CustomerID)
	e.str(r.ISP)
	e.str(r.Access)
	e.str(r.Source)
	e.time(r.Updated)
	e.time(r.Created)
	return e.b
}

func decodeRegistration(key, val []byte) (Registration, error) {
	d := decoder{b: val}
	ver := d.version()
	var r Registration
	r.MAC = d.mac()
	flags := d.u8()
	if d.err == nil && flags&^flagBlocked != 0 {
		d.fail(fmt.Errorf("unknown flags %#x", flags))
	}
	r.Blocked = flags&flagBlocked != 0
	r.CustomerID = d.str()
	r.ISP = d.str()
	r.Access = d.str()
	r.Source = d.str()
	r.Updated = d.time()
	if ver >= 3 {
		r.Created = d.time()
	}
	if err := d.finish(); err != nil {
		return Registration{}, corrupt(bucketRegistrations, key, err)
	}
	if string(key) != string(r.MAC[:]) {
		return Registration{}, corrupt(bucketRegistrations, key, fmt.Errorf("value is for MAC %s", macString(r.MAC)))
	}
	return r, nil
}

// Binding: version, Access, VLAN, MAC, ISP, IP, Circuit, ServerID, Relay,
// Expires, Updated; then (version 2) ClientID, Option82, Options (each
// uvarint-length-prefixed bytes), LeaseTime (varint nanoseconds), Customer;
// then (version 5) Boot; then (version 6) a byte, 1 if Since follows (0:
// Since is zero, not known).

func encodeBinding(b *Binding) []byte {
	// One allocation: the fixed fields at their widest (132 bytes: three
	// IPv6 addresses, three 10+5-byte times and Since's flag, a 10-byte
	// lease time, 2-byte length prefixes) plus the variable ones. Only an
	// address zone, which no lease address carries, can make it grow.
	e := encoder{b: make([]byte, 0, 132+len(b.Access)+len(b.ISP)+len(b.Circuit)+len(b.ClientID)+len(b.Option82)+len(b.Options)+len(b.Customer)+len(b.Boot))}
	e.u8(formatVersion)
	e.str(b.Access)
	e.u16(b.VLAN)
	e.mac(b.MAC)
	e.str(b.ISP)
	e.addr(b.IP)
	e.str(b.Circuit)
	e.addr(b.ServerID)
	e.addr(b.Relay)
	e.time(b.Expires)
	e.time(b.Updated)
	e.bytes(b.ClientID)
	e.bytes(b.Option82)
	e.bytes(b.Options)
	e.b = binary.AppendVarint(e.b, int64(b.LeaseTime))
	e.str(b.Customer)
	e.bytes(b.Boot)
	if b.Since.IsZero() {
		e.u8(0)
	} else {
		e.u8(1)
		e.time(b.Since)
	}
	return e.b
}

func decodeBinding(key, val []byte) (Binding, error) { return decodeBindingFrom(key, val, false) }

// decodeBindingFrom is decodeBinding, its strings and bytes aliasing val
// if borrow.
func decodeBindingFrom(key, val []byte, borrow bool) (Binding, error) {
	d := decoder{b: val, borrow: borrow}
	ver := d.version()
	var b Binding
	b.Access = d.str()
	b.VLAN = d.u16()
	b.MAC = d.mac()
	b.ISP = d.str()
	b.IP = d.addr()
	b.Circuit = d.str()
	b.ServerID = d.addr()
	b.Relay = d.addr()
	b.Expires = d.time()
	b.Updated = d.time()
	if ver >= 2 {
		b.ClientID = d.bytes()
		b.Option82 = d.bytes()
		b.Options = d.bytes()
		b.LeaseTime = time.Duration(d.varint())
		b.Customer = d.str()
		if d.err == nil && b.LeaseTime < 0 {
			d.fail(fmt.Errorf("negative lease time %v", b.LeaseTime))
		}
	}
	if ver >= 5 {
		b.Boot = d.bytes()
		if d.err == nil && len(b.Boot) != 0 && len(b.Boot) != BootLen {
			d.fail(fmt.Errorf("boot fields of %d bytes", len(b.Boot)))
		}
	}
	if ver >= 6 {
		switch f := d.u8(); {
		case d.err != nil:
		case f == 1:
			b.Since = d.time()
			if d.err == nil && b.Since.IsZero() {
				d.fail(errors.New("since flagged but zero"))
			}
		case f != 0:
			d.fail(fmt.Errorf("unknown since flag %#x", f))
		}
	}
	if err := d.finish(); err != nil {
		return Binding{}, corrupt(bucketBindings, key, err)
	}
	if string(key) != string(bindingKey(b.Access, b.VLAN, b.MAC)) {
		return Binding{}, corrupt(bucketBindings, key, fmt.Errorf("value is for %s", bindingName(b.Access, b.VLAN, b.MAC)))
	}
	return b, nil
}

// bindingKey is access, 0x00, VLAN (big-endian), MAC: the bindings of one
// access port are contiguous and sorted by VLAN. Access must not contain
// 0x00 (checked by validAccess).
func bindingKey(access string, vlan uint16, mac MAC) []byte {
	k := make([]byte, 0, len(access)+1+2+6)
	k = append(k, access...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint16(k, vlan)
	return append(k, mac[:]...)
}

func bindingName(access string, vlan uint16, mac MAC) string {
	return fmt.Sprintf("%s/%d/%s", access, vlan, macString(mac))
}

// Event: version, Time, Kind, MAC, ISP, IP, Reason; then (version 2)
// Customer, Access; then (version 3) Actor, RequestID. Seq is the key.

func encodeEvent(ev *Event) []byte {
	// The fixed fields at their widest: 69 bytes (two 10+5-byte times, an
	// IPv6 address, 2-byte length prefixes).
	e := encoder{b: make([]byte, 0, 69+len(ev.Kind)+len(ev.ISP)+len(ev.Reason)+len(ev.Customer)+len(ev.Access)+len(ev.Actor)+len(ev.RequestID))}
	e.u8(formatVersion)
	e.time(ev.Time)
	e.str(string(ev.Kind))
	e.mac(ev.MAC)
	e.str(ev.ISP)
	e.addr(ev.IP)
	e.str(ev.Reason)
	e.str(ev.Customer)
	e.str(ev.Access)
	e.str(ev.Actor)
	e.str(ev.RequestID)
	if ev.LeaseEnd.IsZero() {
		e.u8(0)
	} else {
		e.u8(1)
		e.time(ev.LeaseEnd)
	}
	return e.b
}

func decodeEvent(key, val []byte) (Event, error) {
	if len(key) != 8 {
		return Event{}, corrupt(bucketEvents, key, fmt.Errorf("key is %d bytes, want 8", len(key)))
	}
	d := decoder{b: val}
	ver := d.version()
	var ev Event
	ev.Seq = binary.BigEndian.Uint64(key)
	ev.Time = d.time()
	ev.Kind = EventKind(d.str())
	ev.MAC = d.mac()
	ev.ISP = d.str()
	ev.IP = d.addr()
	ev.Reason = d.str()
	if ver >= 2 {
		ev.Customer = d.str()
		ev.Access = d.str()
	}
	if ver >= 3 {
		ev.Actor = d.str()
		ev.RequestID = d.str()
	}
	if ver >= 4 && d.u8() == 1 {
		ev.LeaseEnd = d.time()
	}
	if err := d.finish(); err != nil {
		return Event{}, corrupt(bucketEvents, key, err)
	}
	return ev, nil
}

// eventTime is the Time of an encoded event, read without decoding the
// rest; ok is false if its head does not decode (decodeEvent says why).
func eventTime(val []byte) (t time.Time, ok bool) {
	d := decoder{b: val}
	d.version()
	t = d.time()
	return t, d.err == nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// maxString bounds the strings callers may store (access port names,
// customer IDs, reasons): far above any real one, low enough that a bad
// caller cannot bloat the file.
const maxString = math.MaxUint16

// Bounds on the byte fields of a binding: an option's value is at most 255
// bytes, and a DHCP message's options fit in an Ethernet MTU.
const (
	maxClientID = 255
	maxOption82 = 255
	maxOptions  = 1500
	// maxMessage bounds an intent's DHCP message (a UDP payload).
	maxMessage = 65507
)

// Intent: version, Kind, ISP, MAC, Access, VLAN, IP, Message (bytes),
// Created. ID is the key. Intents exist from version 2 on.

func encodeIntent(in *Intent) []byte {
	e := encoder{b: make([]byte, 0, 64+len(in.Message))}
	e.u8(formatVersion)
	e.str(string(in.Kind))
	e.str(in.ISP)
	e.mac(in.MAC)
	e.str(in.Access)
	e.u16(in.VLAN)
	e.addr(in.IP)
	e.bytes(in.Message)
	e.time(in.Created)
	return e.b
}

func decodeIntent(key, val []byte) (Intent, error) {
	if len(key) != 8 {
		return Intent{}, corrupt(bucketIntents, key, fmt.Errorf("key is %d bytes, want 8", len(key)))
	}
	d := decoder{b: val}
	if v := d.version(); d.err == nil && v < 2 {
		d.fail(fmt.Errorf("format version %d has no intents", v))
	}
	var in Intent
	in.ID = binary.BigEndian.Uint64(key)
	in.Kind = IntentKind(d.str())
	in.ISP = d.str()
	in.MAC = d.mac()
	in.Access = d.str()
	in.VLAN = d.u16()
	in.IP = d.addr()
	in.Message = d.bytes()
	in.Created = d.time()
	if err := d.finish(); err != nil {
		return Intent{}, corrupt(bucketIntents, key, err)
	}
	return in, nil
}

// Customer: version, ISP, ID, PasswordHash, Status, DeviceLimit (varint),
// Source, Created, Updated. The key is ISP, 0x00, ID. Customers exist from
// version 3 on.

func encodeCustomer(c *Customer) []byte {
	e := encoder{b: make([]byte, 0, 64+len(c.PasswordHash))}
	e.u8(formatVersion)
	e.str(c.ISP)
	e.str(c.ID)
	e.str(c.PasswordHash)
	e.str(c.Status)
	e.b = binary.AppendVarint(e.b, int64(c.DeviceLimit))
	e.str(c.Source)
	e.time(c.Created)
	e.time(c.Updated)
	return e.b
}

func decodeCustomer(key, val []byte) (Customer, error) {
	return decodeCustomerOf(key, val, false)
}

// decodeCustomerOf is decodeCustomer; with borrow, the strings are read
// in place (no copies): valid only within the transaction that read val.
func decodeCustomerOf(key, val []byte, borrow bool) (Customer, error) {
	d := decoder{b: val, borrow: borrow}
	if v := d.version(); d.err == nil && v < 3 {
		d.fail(fmt.Errorf("format version %d has no customers", v))
	}
	var c Customer
	c.ISP = d.str()
	c.ID = d.str()
	c.PasswordHash = d.str()
	c.Status = d.str()
	limit := d.varint()
	c.Source = d.str()
	c.Created = d.time()
	c.Updated = d.time()
	if d.err == nil && (limit < 0 || limit > math.MaxInt32) {
		d.fail(fmt.Errorf("device limit %d out of range", limit))
	}
	c.DeviceLimit = int(limit)
	if err := d.finish(); err != nil {
		return Customer{}, corrupt(bucketCustomers, key, err)
	}
	if string(key) != string(customerKey(c.ISP, c.ID)) {
		return Customer{}, corrupt(bucketCustomers, key, fmt.Errorf("value is for customer %q of ISP %q", c.ID, c.ISP))
	}
	return c, nil
}

// customerKey is ISP, 0x00, ID: an ISP's customers are contiguous and
// sorted by ID. Neither may contain 0x00 (validateCustomer).
func customerKey(isp, id string) []byte {
	k := make([]byte, 0, len(isp)+1+len(id))
	k = append(k, isp...)
	k = append(k, 0)
	return append(k, id...)
}

// deviceIndexKey is the devices-by-customer key of a registration: ISP,
// 0x00, CustomerID, 0x00, MAC. Neither string may contain 0x00
// (validateRegistration); readers also check the registration the MAC
// names still matches, so an entry left behind by a corrupt value is
// skipped.
func deviceIndexKey(isp, customer string, mac MAC) []byte {
	k := make([]byte, 0, len(isp)+1+len(customer)+1+6)
	k = append(k, isp...)
	k = append(k, 0)
	k = append(k, customer...)
	k = append(k, 0)
	return append(k, mac[:]...)
}

// eventIndexKey is the events-by-isp key: ISP, 0x00, big-endian Seq.
func eventIndexKey(isp string, seq uint64) []byte {
	k := make([]byte, 0, len(isp)+1+8)
	k = append(k, isp...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// Change: version, Time, Kind, Op, Key (bytes). Seq is the key. Changes
// exist from version 3 on.

func encodeChange(c *Change) []byte {
	e := encoder{b: make([]byte, 0, 32+len(c.Key))}
	e.u8(formatVersion)
	e.time(c.Time)
	e.str(string(c.Kind))
	e.str(string(c.Op))
	e.bytes(c.Key)
	return e.b
}

func decodeChange(key, val []byte) (Change, error) {
	if len(key) != 8 {
		return Change{}, corrupt(bucketChanges, key, fmt.Errorf("key is %d bytes, want 8", len(key)))
	}
	d := decoder{b: val}
	if v := d.version(); d.err == nil && v < 3 {
		d.fail(fmt.Errorf("format version %d has no changes", v))
	}
	var c Change
	c.Seq = binary.BigEndian.Uint64(key)
	c.Time = d.time()
	c.Kind = ChangeKind(d.str())
	c.Op = ChangeOp(d.str())
	c.Key = d.bytes()
	if err := d.finish(); err != nil {
		return Change{}, corrupt(bucketChanges, key, err)
	}
	if err := c.fill(); err != nil {
		return Change{}, corrupt(bucketChanges, key, err)
	}
	return c, nil
}
