package classifier

import (
	"fmt"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/lfmap"
)

// Sub is a MAC table entry: what the datapath needs to know about a
// subscriber's (port, VLAN, MAC). It packs into the table's 64-bit value.
type Sub struct {
	IP    uint32 // bound IPv4 address (0 if not bound)
	ISP   uint8  // index of the chosen ISP
	Flags uint8  // FlagBound, FlagStatic
}

// Sub flags.
const (
	FlagBound  uint8 = 1 << 0 // the ISP has ACKed: forward, enforce the source IP
	FlagStatic uint8 = 1 << 1 // configured, not learnt through DHCP
)

// Pack encodes s as IP<<32 | ISP<<8 | Flags: never ^0 (bits 16–31 are 0),
// the value lfmap reserves for a deleted entry.
func (s Sub) Pack() uint64 { return uint64(s.IP)<<32 | uint64(s.ISP)<<8 | uint64(s.Flags) }

// UnpackSub decodes a value made by Sub.Pack.
func UnpackSub(v uint64) Sub { return Sub{IP: uint32(v >> 32), ISP: uint8(v >> 8), Flags: uint8(v)} }

// Limits of the MAC table key.
const (
	MaxPort = 15   // access ports are numbered 0..15
	MaxVLAN = 4095 // 0 is untagged
)

// Key builds the table key mac<<16 | vlan<<4 | port. port and vlan are masked
// to 4 and 12 bits; check them against MaxPort and MaxVLAN first. The key is
// never 0 (or lfmap's other reserved key, ^0) for a non-zero unicast MAC.
func Key(port uint8, vlan uint16, mac uint64) uint64 {
	return mac<<16 | uint64(vlan&MaxVLAN)<<4 | uint64(port&MaxPort)
}

// splitKey inverts Key.
func splitKey(k uint64) (port uint8, vlan uint16, mac uint64) {
	return uint8(k & MaxPort), uint16(k>>4) & MaxVLAN, k >> 16
}

var (
	// ErrTableFull is returned by MACTable.Set when the table holds its
	// capacity of entries; it is lfmap.ErrFull.
	ErrTableFull = lfmap.ErrFull
	// ErrBadKey is returned by MACTable.Set for a port above MaxPort, a VLAN
	// above MaxVLAN, or a MAC that is zero, multicast or wider than 48 bits.
	ErrBadKey = lfmap.ErrBadKey
)

// validKey reports whether (port, vlan, mac) can be a MAC table key.
func validKey(port uint8, vlan uint16, mac uint64) bool {
	return port <= MaxPort && vlan <= MaxVLAN && binding.SubscriberMAC(mac)
}

// MACTable maps (access port, VLAN, MAC) to a Sub. One goroutine (the control
// plane) writes it with Set and Delete, serialised by the caller; workers read
// it lock-free through View. See the package documentation and
// internal/lfmap for the publication rules.
type MACTable struct {
	m *lfmap.Map
}

// MACView is a read-only snapshot of the table for one batch of frames. It is
// the lfmap view itself (a conversion, not a copy), so taking it is one atomic
// load and no allocation.
type MACView lfmap.View

// macLoad is the MAC table's maximum load factor, 0.5: 2 slots, 32 B, per
// entry of capacity, where lfmap.New's 0.8 takes 20 B. The table is looked
// up for every upstream packet, and a lookup pays for the lines it reads
// past the key's home line, which a lower load makes rarer (figures at
// lfmap.Load).
//
// Measured on a 2-CPU shared VM at 0.8 / 0.67 / 0.6 / 0.5 maximum load.
// BenchmarkMACTable/1M ÷ BenchmarkMACTableFloor/1M (issue 11's target:
// ≤ 1.3), alternated processes of the four builds, median [min–max] over
// 28 runs (0.67: 18): 1.70 [1.12–2.64] / 1.37 [0.85–1.84] / 1.29
// [0.84–1.70] / 1.18 [0.69–1.45]; ns per lookup at 1K 6.6 / 6.0 / 6.0 /
// 5.7, at 1M 11.9 / 10.4 / 10.6 / 10.3. The floor reads a table the size
// of the slot array, and a larger one is slower to read at random (7.1 /
// 7.5 / 8.3 / 9.0 ns at 1M): part of the gain in that ratio is the
// floor's. In one process, the four tables and their floors timed in
// alternated blocks of 4096 keys (6 runs, steadier): ratio 1.66
// [1.61–1.69] / 1.38 [1.35–1.42] / 1.28 [1.26–1.33] / 1.19 [1.15–1.22];
// present keys at 1M 11.6 / 10.1 / 9.4 / 9.1 ns, at 1K 5.5 / 4.7 / 4.4 /
// 4.2; absent keys at 1M 20.4 / 13.8 / 12.0 / 10.7, at 1K 14.8 / 6.7 /
// 5.6 / 5.0. 0.5 is the load that keeps the lookup within 1.3× its floor
// with room to spare; 0.6 is on the line. It costs 12 B per subscriber
// more than 0.8 (12 MB at 1M). BenchmarkPipeline/1M (engine) did not
// move beyond its noise: 73.7 [69.4–79.3] ns at 0.8, 74.2 [69.7–80.7] at
// 0.5 (8 alternated runs).
var macLoad = lfmap.Load{Num: 1, Den: 2}

// NewMACTable returns a table for up to capacity subscribers. Its slot
// array grows with the subscribers it holds (see lfmap), up to 32 bytes per
// subscriber of capacity when full (a maximum load of 0.5, see macLoad):
// the few subscribers of a table made for many sit on few cache lines.
// seed randomises the hash.
func NewMACTable(capacity int, seed uint64) *MACTable {
	return &MACTable{m: lfmap.NewLoad(capacity, macLoad, seed)}
}

// View returns the current snapshot. Call it once per batch.
func (t *MACTable) View() *MACView { return (*MACView)(t.m.View()) }

// Lookup returns the entry for (port, vlan, mac). It never locks or allocates.
func (v *MACView) Lookup(port uint8, vlan uint16, mac uint64) (Sub, bool) {
	if port > MaxPort || vlan > MaxVLAN {
		return Sub{}, false
	}
	val, ok := (*lfmap.View)(v).Lookup(Key(port, vlan, mac))
	return UnpackSub(val), ok
}

// LookupBatch looks up keys[i] (made with Key; 0 = skip) into vals[i]
// (a packed Sub, see UnpackSub) and ok[i], overlapping the cache misses of
// the whole batch (see lfmap.View.LookupBatch). Never locks or allocates.
func (v *MACView) LookupBatch(keys, vals []uint64, ok []bool) {
	(*lfmap.View)(v).LookupBatch(keys, vals, ok)
}

// Lookup is t.View().Lookup; workers should hold a view per batch instead.
func (t *MACTable) Lookup(port uint8, vlan uint16, mac uint64) (Sub, bool) {
	return t.View().Lookup(port, vlan, mac)
}

// Set inserts or replaces the entry for (port, vlan, mac). It returns an error
// wrapping ErrBadKey for an invalid key and ErrTableFull when the table is
// full. Writer only.
func (t *MACTable) Set(port uint8, vlan uint16, mac uint64, s Sub) error {
	if !validKey(port, vlan, mac) {
		return fmt.Errorf("mac table: set port %d vlan %d mac %012x: %w", port, vlan, mac, ErrBadKey)
	}
	if err := t.m.Store(Key(port, vlan, mac), s.Pack()); err != nil {
		return fmt.Errorf("mac table: set port %d vlan %d mac %012x: %w (capacity %d)", port, vlan, mac, err, t.m.Cap())
	}
	return nil
}

// Delete removes the entry for (port, vlan, mac) and reports whether it was
// present. Writer only.
func (t *MACTable) Delete(port uint8, vlan uint16, mac uint64) bool {
	if !validKey(port, vlan, mac) {
		return false
	}
	return t.m.Delete(Key(port, vlan, mac))
}

// Len returns the number of entries.
func (t *MACTable) Len() int { return t.m.Len() }

// Cap returns the maximum number of entries.
func (t *MACTable) Cap() int { return t.m.Cap() }

// Bytes returns the memory of the table's slot array now: it grows with the
// entries, up to MaxBytes.
func (t *MACTable) Bytes() int { return t.m.Bytes() }

// MaxBytes returns the memory of the slot array when the table holds Cap
// entries: 32 bytes per entry of capacity.
func (t *MACTable) MaxBytes() int { return t.m.MaxBytes() }

// Reserve grows the slot array at once to hold n entries (at most Cap), for
// a bulk load of known size: one rebuild where Set one entry at a time
// would grow it in steps. Writer only.
func (t *MACTable) Reserve(n int) { t.m.Reserve(n) }

// Grows returns how many times the slot array has grown since the table
// was made (lfmap.Map.Grows): a diagnostic for the tests of bulk loads.
// Writer only.
func (t *MACTable) Grows() int { return t.m.Grows() }

// Range calls fn for each entry until fn returns false, with the caveats of
// lfmap.Map.Range under a concurrent writer.
func (t *MACTable) Range(fn func(port uint8, vlan uint16, mac uint64, s Sub) bool) {
	t.m.Range(func(k, v uint64) bool {
		port, vlan, mac := splitKey(k)
		return fn(port, vlan, mac, UnpackSub(v))
	})
}
