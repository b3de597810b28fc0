package subscribers

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
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
	b.Since = time.Date(1, 1, 1, 0, 0, 0, 999999999, time.UTC)
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
	v4 = v4[:len(v4)-2] // no boot fields' length, nor Since's flag (format 6)
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

// bindingV5 is a binding value as the format-5 encoder (before Since)
// wrote it, byte for byte (encodeBinding at commit 5b3f2e5): v5Binding.
const bindingV5 = "050461636330006402000000010505616c706861046440000508616363303a31303004c000020104c0000202a094b0b10d0580dcafb10d" +
	"0607010200000001050a0108616363303a31303006330400000e108080c58bc6d10103632d3500"

// v5Binding is what bindingV5 holds.
func v5Binding() Binding {
	return Binding{MAC: MAC{2, 0, 0, 0, 1, 5}, Access: "acc0", VLAN: 100, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.5"),
		Circuit: "acc0:100", ServerID: netip.MustParseAddr("192.0.2.1"), Relay: netip.MustParseAddr("192.0.2.2"),
		Expires: time.Date(2026, 12, 7, 1, 0, 0, 5, time.UTC), Updated: time.Date(2026, 12, 7, 0, 0, 0, 6, time.UTC),
		ClientID: []byte{1, 2, 0, 0, 0, 1, 5}, Option82: []byte{1, 8, 'a', 'c', 'c', '0', ':', '1', '0', '0'},
		Options: []byte{51, 4, 0, 0, 14, 16}, LeaseTime: time.Hour, Customer: "c-5"}
}

// TestBindingSince: a binding's start (format version 6) reads back as
// written, and a zero one as zero; a value of format 5, written before
// Since was stored (the old encoder's bytes, not this one's cut short),
// reads with Since zero (not known) and everything else as it was; a
// Since flag other than 0 or 1, or a flagged zero time, is corrupt, as is
// a value cut inside Since. Fails without Since in the encoding.
func TestBindingSince(t *testing.T) {
	old, err := hex.DecodeString(bindingV5)
	if err != nil {
		t.Fatal(err)
	}
	want := v5Binding()
	key := bindingKey(want.Access, want.VLAN, want.MAC)
	got, err := decodeBinding(key, old)
	if err != nil || !bindingEqual(got, want) || !got.Since.IsZero() {
		t.Fatalf("format 5 value decoded %+v, %v; want %+v with Since zero", got, err, want)
	}
	// Written again (a renewal carrying the unknown start over): format
	// 6, Since still zero.
	v := encodeBinding(&got)
	if v[0] != formatVersion || formatVersion != 6 {
		t.Fatalf("re-encoded as format %d", v[0])
	}
	if again, err := decodeBinding(key, v); err != nil || !bindingEqual(again, want) {
		t.Errorf("format 5 value re-encoded reads %+v, %v", again, err)
	}
	if !bytes.Equal(v[:len(old)], append([]byte{formatVersion}, old[1:]...)) || len(v) != len(old)+1 {
		t.Errorf("zero Since: %x, want the format 5 fields and one flag byte", v)
	}

	b := want
	b.Since = time.Date(2026, 12, 6, 23, 0, 0, 7, time.UTC)
	v = encodeBinding(&b)
	if got, err := decodeBinding(key, v); err != nil || !bindingEqual(got, b) {
		t.Errorf("Since %v decoded %+v, %v", b.Since, got, err)
	}
	for n := len(old) + 1; n < len(v); n++ {
		if _, err := decodeBinding(key, v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("cut to %d of %d bytes: %v, want ErrCorrupt", n, len(v), err)
		}
	}
	flag := len(old)
	bad := bytes.Clone(v)
	bad[flag] = 2
	if _, err := decodeBinding(key, bad); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "since flag") {
		t.Errorf("since flag 2: %v, want ErrCorrupt", err)
	}
	var e encoder
	e.time(time.Time{})
	zero := append(append(bytes.Clone(v[:flag]), 1), e.b...)
	if _, err := decodeBinding(key, zero); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flagged zero Since: %v, want ErrCorrupt", err)
	}
}

// TestBindingSinceKept: a binding's Since is what the store keeps: read
// from the binding journal, replayed from it after a crash, after a
// reopen, and in a backup copy. Fails without Since in the encoding.
func TestBindingSinceKept(t *testing.T) {
	s, path := openTest(t, Options{})
	b := testBinding(9)
	b.Since = time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC)
	if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP}); err != nil {
		t.Fatal(err)
	}
	read := func(s *Store, what string) {
		t.Helper()
		got, err := s.Binding(b.Access, b.VLAN, b.MAC)
		if err != nil || !got.Since.Equal(b.Since) {
			t.Errorf("%s: Since %v, %v; want %v", what, got.Since, err, b.Since)
		}
	}
	if len(s.pendingBindings()) != 1 {
		t.Fatal("the binding is not pending in the journal")
	}
	read(s, "committed, in the journal")
	crashed, _ := crashCopy(t, path)
	read(crashed, "replayed after a crash")
	s = reopen(t, s, Options{NoSync: true})
	read(s, "reopened")
	c, _ := restoreCopy(t, s, Options{NoSync: true})
	read(c, "backup copy")
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
