package fib

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ispmux/ispmux/internal/lfmap"
)

// MaxISPs is the number of ISPs (and so VRFs) fib can hold. ISP indexes run
// from 0 to MaxISPs-1; 255 is never a valid index.
const MaxISPs = 255

var (
	// ErrInvalidVRF reports a VRF (ISP index) >= MaxISPs.
	ErrInvalidVRF = errors.New("vrf out of range (ISP index must be below 255)")
	// ErrInvalidDest reports a Dest whose Port, VLAN or MAC does not fit its
	// packed field (port < 16, VLAN < 4096, MAC < 1<<48), or whose MAC is
	// not unicast (a subscriber's never is).
	ErrInvalidDest = errors.New("destination out of range")
)

// Dest is where a downstream packet goes: the subscriber's access port,
// VLAN and MAC.
type Dest struct {
	Port uint8  // access port, 0..15
	VLAN uint16 // 0..4095; 0 means untagged
	MAC  uint64 // 48-bit, in the low bits
}

// Pack encodes d as MAC<<16 | VLAN<<4 | Port. Out-of-range fields are
// truncated; Table.Set rejects them instead, and multicast MACs, so that a
// stored value is never ^0, the value lfmap reserves for a deleted entry.
func (d Dest) Pack() uint64 {
	return (d.MAC&macMask)<<16 | uint64(d.VLAN&0xfff)<<4 | uint64(d.Port&0xf)
}

// UnpackDest decodes a value made by Dest.Pack.
func UnpackDest(v uint64) Dest {
	return Dest{Port: uint8(v & 0xf), VLAN: uint16(v>>4) & 0xfff, MAC: v >> 16}
}

func (d Dest) valid() bool {
	return d.Port < 16 && d.VLAN < 4096 && d.MAC <= macMask && d.MAC&groupBit == 0
}

// groupBit is the I/G bit of a MAC in the low 48 bits: set for multicast
// and broadcast. Without it Pack is never ^0, lfmap's deleted value.
const groupBit = 1 << 40

const macMask = 1<<48 - 1

// tableKey is never 0 or ^0 (lfmap's reserved keys) because bit 40 is set
// and bits 41..63 are clear.
func tableKey(vrf uint8, ip uint32) uint64 {
	return 1<<40 | uint64(vrf)<<32 | uint64(ip)
}

// Table maps (VRF, destination IPv4) to the subscriber's Dest. Readers use
// View (lock-free); writers Set and Delete (serialised by mu). See the
// package doc for the concurrency rule.
type Table struct {
	m *lfmap.Map

	// mu serialises writers; readers never take it.
	mu sync.Mutex
}

// tableLoad is the table's maximum load factor, 0.5 (lfmap.New's is 0.8):
// 2 slots, 32 B, per entry of capacity. The table is looked up for every
// downstream packet, and for one to an address nobody holds (the
// Internet's scans) that is the lookup of an absent key, which reads 2.9
// lines past its home line on average at 0.8 and 0.23 at 0.5. It is the
// MAC table's load, measured there (classifier's macLoad): at 1M entries
// the batched lookup took 11.6 ns per present key and 20.4 per absent one
// at 0.8, 9.1 and 10.7 at 0.5.
var tableLoad = lfmap.Load{Num: 1, Den: 2}

// NewTable returns an empty table that holds up to capacity entries. Its
// slot array grows with the entries (see lfmap), up to 16 bytes ×
// capacity × 2 when full (see tableLoad). seed keys the hash; use a random
// one so subscribers cannot choose colliding addresses.
func NewTable(capacity int, seed uint64) *Table {
	return &Table{m: lfmap.NewLoad(capacity, tableLoad, seed)}
}

// TableView is a read-only snapshot of a Table for one batch. It is the
// lfmap.View itself under another name, so taking one does not allocate.
type TableView lfmap.View

// View returns the current snapshot. Take it once per batch, use it for the
// whole batch, and drop it at the end of the batch. Safe from any goroutine.
func (t *Table) View() *TableView {
	return (*TableView)(t.m.View())
}

// Lookup returns the Dest of ip in vrf. Lock-free, zero-alloc.
func (v *TableView) Lookup(vrf uint8, ip uint32) (Dest, bool) {
	p, ok := (*lfmap.View)(v).Lookup(tableKey(vrf, ip))
	if !ok {
		return Dest{}, false
	}
	return UnpackDest(p), true
}

// Key is the table key of (vrf, ip), for LookupBatch.
func Key(vrf uint8, ip uint32) uint64 { return tableKey(vrf, ip) }

// LookupBatch looks up keys[i] (made with Key; 0 = skip) into vals[i] (a
// packed Dest, see UnpackDest) and ok[i], overlapping the cache misses of
// the whole batch. Lock-free, zero-alloc.
func (v *TableView) LookupBatch(keys, vals []uint64, ok []bool) {
	(*lfmap.View)(v).LookupBatch(keys, vals, ok)
}

// Lookup is View().Lookup for the control plane. Datapath code takes a View
// once per batch instead.
func (t *Table) Lookup(vrf uint8, ip uint32) (Dest, bool) {
	p, ok := t.m.Lookup(tableKey(vrf, ip))
	if !ok {
		return Dest{}, false
	}
	return UnpackDest(p), true
}

// Set binds ip in vrf to d, replacing any previous binding of (vrf, ip).
// It fails with ErrInvalidVRF, ErrInvalidDest, or lfmap.ErrFull when the
// table already holds Cap entries.
func (t *Table) Set(vrf uint8, ip uint32, d Dest) error {
	if vrf >= MaxISPs {
		return fmt.Errorf("fib set vrf %d: %w", vrf, ErrInvalidVRF)
	}
	if !d.valid() {
		return fmt.Errorf("fib set vrf %d %s: %w (port %d, vlan %d, mac %#x)",
			vrf, ipString(ip), ErrInvalidDest, d.Port, d.VLAN, d.MAC)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.m.Store(tableKey(vrf, ip), d.Pack()); err != nil {
		return fmt.Errorf("fib set vrf %d %s: %w", vrf, ipString(ip), err)
	}
	return nil
}

// Delete removes (vrf, ip) and reports whether it was present.
func (t *Table) Delete(vrf uint8, ip uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Delete(tableKey(vrf, ip))
}

// Len returns the number of entries. Any goroutine.
func (t *Table) Len() int { return t.m.Len() }

// Cap returns the most entries the table holds; Set of a new (vrf, ip)
// beyond it fails with lfmap.ErrFull. Any goroutine.
func (t *Table) Cap() int { return t.m.Cap() }

// Bytes returns the memory held by the table's slots now: it grows with the
// entries, up to MaxBytes. Any goroutine.
func (t *Table) Bytes() int { return t.m.Bytes() }

// MaxBytes returns the memory of the table's slots when it holds Cap
// entries. Any goroutine.
func (t *Table) MaxBytes() int { return t.m.MaxBytes() }

// Reserve grows the table at once to hold n entries (at most Cap), for a
// bulk load of known size: one rebuild where Set one entry at a time would
// grow it in steps.
func (t *Table) Reserve(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m.Reserve(n)
}

// Grows returns how many times the table's slot array has grown since it
// was made (lfmap.Map.Grows): a diagnostic for the tests of bulk loads.
func (t *Table) Grows() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Grows()
}

// Range calls fn for every entry until fn returns false, for dumps and
// status pages. Any goroutine; entries set or deleted while it runs may be
// missed (never seen twice). fn must not call Set or Delete.
func (t *Table) Range(fn func(vrf uint8, ip uint32, d Dest) bool) {
	t.m.Range(func(k, v uint64) bool {
		return fn(uint8(k>>32), uint32(k), UnpackDest(v))
	})
}

func ipString(ip uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", ip>>24, ip>>16&0xff, ip>>8&0xff, ip&0xff)
}
