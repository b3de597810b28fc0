package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestEncoderAddr: an address is its MarshalBinary form behind a uvarint
// length (the on-disk format), appended in place for every kind of
// address.
func TestEncoderAddr(t *testing.T) {
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::53"),
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:192.0.2.1")} {
		var e encoder
		e.addr(a)
		m, _ := a.MarshalBinary()
		want := append(binary.AppendUvarint(nil, uint64(len(m))), m...)
		if !bytes.Equal(e.b, want) {
			t.Errorf("addr(%v) = %x, want %x", a, e.b, want)
		}
		d := decoder{b: e.b}
		if got := d.addr(); got != a || d.err != nil {
			t.Errorf("addr(%v) decodes to %v, %v", a, got, d.err)
		}
	}
}

// TestEncodeBindingAllocs: a binding's value is built in one allocation
// (it is encoded for every ACK).
func TestEncodeBindingAllocs(t *testing.T) {
	b := testBinding(7)
	b.ClientID, b.Option82, b.Options = []byte{1, 2, 3, 4, 5, 6, 7}, make([]byte, 40), make([]byte, 60)
	b.Customer, b.Boot = "customer-0007", make([]byte, BootLen)
	if n := testing.AllocsPerRun(100, func() { _ = encodeBinding(&b) }); n != 1 {
		t.Errorf("encodeBinding: %v allocations, want 1", n)
	}
	// The fixed fields at their widest: three IPv6 addresses, times far
	// from the epoch, the longest lease time.
	v6 := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
	b.IP, b.ServerID, b.Relay = v6, v6, v6
	b.Expires, b.Updated = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 999999999, time.UTC)
	b.LeaseTime = time.Duration(math.MaxInt64)
	if n := testing.AllocsPerRun(100, func() { _ = encodeBinding(&b) }); n != 1 {
		t.Errorf("encodeBinding, widest fixed fields: %v allocations, want 1", n)
	}
}

// TestBindingBoot: a binding's boot fields (format version 5) read back
// as written; a version 4 value, which has none, reads with Boot nil; a
// value whose boot fields are not BootLen bytes is corrupt.
func TestBindingBoot(t *testing.T) {
	b := testBinding(5)
	b.Boot = make([]byte, BootLen)
	for i := range b.Boot {
		b.Boot[i] = byte(i)
	}
	key := bindingKey(b.Access, b.VLAN, b.MAC)
	v := encodeBinding(&b)
	if got, err := decodeBinding(key, v); err != nil || !bindingEqual(got, b) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, b)
	}
	b.Boot = nil
	v4 := encodeBinding(&b)
	v4 = v4[:len(v4)-1] // no boot fields' length
	v4[0] = 4
	if got, err := decodeBinding(key, v4); err != nil || got.Boot != nil || !bindingEqual(got, b) {
		t.Errorf("version 4 value decoded %+v, %v; want %+v", got, err, b)
	}
	b.Boot = []byte{1, 2, 3}
	if _, err := decodeBinding(key, encodeBinding(&b)); err == nil {
		t.Error("boot fields of 3 bytes decoded")
	}
	if err := validateBinding(&b); err == nil {
		t.Error("boot fields of 3 bytes valid")
	}
}

// TestEncodeEventAllocs: an event's value is built in one allocation.
func TestEncodeEventAllocs(t *testing.T) {
	ev := Event{Kind: EventBound, MAC: mac(1), ISP: "alpha", IP: netip.MustParseAddr("100.64.0.1"), Reason: "a reason of some length",
		Customer: "customer-0001", Access: "acc0.100", Actor: "api:alpha", RequestID: "0123456789abcdef"}
	if n := testing.AllocsPerRun(100, func() { _ = encodeEvent(&ev) }); n != 1 {
		t.Errorf("encodeEvent: %v allocations, want 1", n)
	}
	ev.IP = netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
	ev.Time, ev.LeaseEnd = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 999999999, time.UTC)
	if n := testing.AllocsPerRun(100, func() { _ = encodeEvent(&ev) }); n != 1 {
		t.Errorf("encodeEvent, widest fixed fields: %v allocations, want 1", n)
	}
}

// TestNewerFormatSaysRollback: a record of a newer format version (a
// rollback to an older ispmux without the backup of before the upgrade)
// says so, not "corrupt value in bucket ... key 616c...: format version 6"
// (a trial read it as damage).
func TestNewerFormatSaysRollback(t *testing.T) {
	b := testBinding(1)
	v := encodeBinding(&b)
	v[0] = formatVersion + 1
	_, err := decodeBinding(bindingKey(b.Access, b.VLAN, b.MAC), v)
	var nf *NewerFormatError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "written by a newer ispmux") || !strings.Contains(err.Error(), "backup") || strings.Contains(err.Error(), "corrupt") {
		t.Errorf("a newer record: %v", err)
	}
}
