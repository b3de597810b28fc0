package engine

import (
	"net/netip"
	"testing"
)

// TestControlReserve: the MAC table and the FIB start small in a state made
// for a million subscribers (lfmap grows them with their entries), and
// Reserve grows both at once to hold n bindings more than they hold, at
// most their capacity; the bindings already there stay.
func TestControlReserve(t *testing.T) {
	r := newRig(t, 1<<20)
	const slot = 16 * 2 // bytes per entry at the tables' 0.5 load
	if m, f := r.s.MAC.Bytes(), r.s.FIB.Bytes(); m != slot*4096 || f != slot*4096 {
		t.Fatalf("new state: MAC table %d B, FIB %d B; want %d each (4096 entries)", m, f, slot*4096)
	}
	b := Binding{Port: 0, MAC: 0x021000000001, ISP: 0, IP: netip.MustParseAddr("100.64.0.9")}
	if err := r.c.Bind(b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ n, entries int }{
		{10_000, 16384},    // 10,001 bindings: 4096 doubled twice
		{5, 16384},         // never shrinks
		{20_000, 32768},    // 20,001
		{1 << 21, 1 << 20}, // the capacity at most
		{100, 1 << 20},
	} {
		r.c.Reserve(tc.n)
		if m, f := r.s.MAC.Bytes(), r.s.FIB.Bytes(); m != slot*tc.entries || f != slot*tc.entries {
			t.Fatalf("Reserve(%d) with 1 binding: MAC table %d B, FIB %d B; want %d each", tc.n, m, f, slot*tc.entries)
		}
		if got, ok := r.c.Binding(b.Port, b.VLAN, b.MAC); !ok || got.IP != b.IP {
			t.Fatalf("Reserve(%d) lost the binding: %+v, %v", tc.n, got, ok)
		}
	}
	if r.s.MAC.Bytes() != r.s.MAC.MaxBytes() || r.s.FIB.Bytes() != r.s.FIB.MaxBytes() {
		t.Fatalf("reserved to the capacity: %d, %d B; MaxBytes %d, %d", r.s.MAC.Bytes(), r.s.FIB.Bytes(), r.s.MAC.MaxBytes(), r.s.FIB.MaxBytes())
	}
}
