package classifier

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestKeyAndPack(t *testing.T) {
	for _, tc := range []struct {
		port uint8
		vlan uint16
		mac  uint64
		key  uint64
	}{
		{0, 0, 0x02aabbccdd01, 0x02aabbccdd01_0000},
		{15, 4095, 0x02aabbccdd01, 0x02aabbccdd01_fff_f},
		{3, 100, 0x000000000001, 0x000000000001_064_3},
	} {
		k := Key(tc.port, tc.vlan, tc.mac)
		if k != tc.key {
			t.Errorf("Key(%d, %d, %#x) = %#x, want %#x", tc.port, tc.vlan, tc.mac, k, tc.key)
		}
		if p, v, m := splitKey(k); p != tc.port || v != tc.vlan || m != tc.mac {
			t.Errorf("splitKey(%#x) = %d, %d, %#x", k, p, v, m)
		}
	}
	for _, s := range []Sub{{}, {IP: 0xc0a80164, ISP: 3, Flags: FlagBound}, {IP: ^uint32(0), ISP: 255, Flags: 255}} {
		if got := UnpackSub(s.Pack()); got != s {
			t.Errorf("UnpackSub(Pack(%+v)) = %+v", s, got)
		}
	}
}

func TestMACTableSet(t *testing.T) {
	tb := NewMACTable(2, 1)
	for _, bad := range []struct {
		port uint8
		vlan uint16
		mac  uint64
	}{
		{16, 1, 0x02aabbccdd01},    // port out of range
		{1, 4096, 0x02aabbccdd01},  // VLAN out of range
		{1, 1, 0},                  // zero MAC
		{1, 1, BroadcastMAC},       // broadcast
		{1, 1, 0x01005e000001},     // multicast
		{1, 1, 0x1_02aabbccdd01},   // wider than 48 bits
		{15, 4095, 0xfeffffffffff}, // unicast; key is not lfmap's reserved ^0, so fine below
		{15, 4095, 0xffffffffffff}, // would be lfmap's reserved key ^0
	} {
		err := tb.Set(bad.port, bad.vlan, bad.mac, Sub{})
		if bad.mac == 0xfeffffffffff {
			if err != nil {
				t.Errorf("Set(%d, %d, %#x) = %v", bad.port, bad.vlan, bad.mac, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("Set(%d, %d, %#x) = %v, want ErrBadKey", bad.port, bad.vlan, bad.mac, err)
		}
		if tb.Delete(bad.port, bad.vlan, bad.mac) {
			t.Errorf("Delete(%d, %d, %#x) = true", bad.port, bad.vlan, bad.mac)
		}
		if _, ok := tb.Lookup(bad.port, bad.vlan, bad.mac); ok {
			t.Errorf("Lookup(%d, %d, %#x) found", bad.port, bad.vlan, bad.mac)
		}
	}
	if err := tb.Set(1, 1, 0x02aabbccdd01, Sub{IP: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(1, 2, 0x02aabbccdd01, Sub{}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("Set on a full table = %v, want ErrTableFull", err)
	}
	// Same MAC on another VLAN or port is another subscriber.
	tb.Delete(15, 4095, 0xfeffffffffff)
	if err := tb.Set(2, 1, 0x02aabbccdd01, Sub{IP: 2}); err != nil {
		t.Fatal(err)
	}
	v := tb.View()
	if s, ok := v.Lookup(1, 1, 0x02aabbccdd01); !ok || s.IP != 1 {
		t.Errorf("port 1: %+v %v", s, ok)
	}
	if s, ok := v.Lookup(2, 1, 0x02aabbccdd01); !ok || s.IP != 2 {
		t.Errorf("port 2: %+v %v", s, ok)
	}
	if _, ok := v.Lookup(1, 2, 0x02aabbccdd01); ok {
		t.Error("vlan 2 found")
	}
	if _, ok := v.Lookup(17, 1, 0x02aabbccdd01); ok { // 17&15 == 1: must not alias
		t.Error("port 17 aliases port 1")
	}
	if tb.Len() != 2 || tb.Cap() != 2 || tb.Bytes() <= 0 {
		t.Errorf("Len %d Cap %d Bytes %d", tb.Len(), tb.Cap(), tb.Bytes())
	}
}

// TestMACTableBytes: the table's memory when full is its maximum load's
// (macLoad, 0.5): 2 slots of 16 B per subscriber of capacity; a table of
// 100,000 starts with the slots of 4096 (lfmap's first array) and grows to
// that when filled, or reserved.
func TestMACTableBytes(t *testing.T) {
	for _, c := range []int{1000, 100_000} {
		tb := NewMACTable(c, 1)
		if got, start := tb.Bytes(), 32*min(c, 4096); got != start || tb.MaxBytes() != 32*c {
			t.Errorf("NewMACTable(%d): Bytes %d, MaxBytes %d; want %d, %d (32 B per entry)", c, got, tb.MaxBytes(), start, 32*c)
		}
		for i := range c {
			if err := tb.Set(0, 1, 0x020000000000|uint64(i), Sub{IP: 1, ISP: 1, Flags: FlagBound}); err != nil {
				t.Fatal(err)
			}
		}
		if got := tb.Bytes(); got != 32*c {
			t.Errorf("NewMACTable(%d) full: Bytes %d, want %d", c, got, 32*c)
		}
		r := NewMACTable(c, 1)
		r.Reserve(c)
		if got := r.Bytes(); got != 32*c {
			t.Errorf("NewMACTable(%d) reserved: Bytes %d, want %d", c, got, 32*c)
		}
	}
}

type macKey struct {
	port uint8
	vlan uint16
	mac  uint64
}

func randomKey(r *rand.Rand) macKey {
	return macKey{
		port: uint8(r.IntN(MaxPort + 1)),
		vlan: uint16(r.IntN(MaxVLAN + 1)),
		mac:  r.Uint64()&(1<<48-1)&^(1<<40) | 2, // unicast, locally administered, non-zero
	}
}

// TestMACTableDifferential checks Set/Delete/Lookup/Range against a Go map.
func TestMACTableDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const capacity = 300
	tb := NewMACTable(capacity, r.Uint64())
	model := map[macKey]Sub{}
	pool := make([]macKey, 400)
	for i := range pool {
		pool[i] = randomKey(r)
	}
	pool[1] = macKey{pool[0].port ^ 1, pool[0].vlan, pool[0].mac} // same MAC, other port
	pool[2] = macKey{pool[0].port, pool[0].vlan ^ 1, pool[0].mac} // same MAC, other VLAN
	for op := range 100000 {
		k := pool[r.IntN(len(pool))]
		if r.IntN(3) == 0 {
			_, want := model[k]
			delete(model, k)
			if got := tb.Delete(k.port, k.vlan, k.mac); got != want {
				t.Fatalf("op %d: Delete(%v) = %v, want %v", op, k, got, want)
			}
			continue
		}
		s := Sub{IP: r.Uint32(), ISP: uint8(r.IntN(4)), Flags: FlagBound}
		_, present := model[k]
		err := tb.Set(k.port, k.vlan, k.mac, s)
		switch {
		case !present && len(model) >= capacity:
			if !errors.Is(err, ErrTableFull) {
				t.Fatalf("op %d: Set on full table = %v", op, err)
			}
		case err != nil:
			t.Fatalf("op %d: Set(%v) = %v", op, k, err)
		default:
			model[k] = s
		}
	}
	v := tb.View()
	for _, k := range pool {
		want, wok := model[k]
		if got, ok := v.Lookup(k.port, k.vlan, k.mac); ok != wok || got != want {
			t.Fatalf("Lookup(%v) = %+v, %v; want %+v, %v", k, got, ok, want, wok)
		}
	}
	n := 0
	tb.Range(func(port uint8, vlan uint16, mac uint64, s Sub) bool {
		n++
		if want, ok := model[macKey{port, vlan, mac}]; !ok || want != s {
			t.Fatalf("Range: %d/%d/%#x = %+v; model %+v, %v", port, vlan, mac, s, want, ok)
		}
		return true
	})
	if n != len(model) || tb.Len() != len(model) {
		t.Fatalf("Range saw %d, Len %d, model %d", n, tb.Len(), len(model))
	}
}

// TestMACTableConcurrent: readers never see a Sub that was not stored for the
// key they looked up (the IP encodes the key).
func TestMACTableConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	keys := make([]macKey, 300)
	for i := range keys {
		keys[i] = randomKey(r)
	}
	ipOf := func(k macKey) uint32 { return uint32(Key(k.port, k.vlan, k.mac) * 0x9e3779b97f4a7c15 >> 32) }
	tb := NewMACTable(200, 9)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(uint64(g), 0))
			for !stop.Load() {
				v := tb.View()
				for range 64 {
					k := keys[rr.IntN(len(keys))]
					if s, ok := v.Lookup(k.port, k.vlan, k.mac); ok && (s.IP != ipOf(k) || s.Flags&FlagBound == 0) {
						t.Errorf("Lookup(%v) = %+v: not stored for this key", k, s)
						stop.Store(true)
					}
				}
			}
		})
	}
	for i := range 300000 {
		k := keys[r.IntN(len(keys))]
		if i%3 == 0 {
			tb.Delete(k.port, k.vlan, k.mac)
		} else if err := tb.Set(k.port, k.vlan, k.mac, Sub{IP: ipOf(k), ISP: uint8(i), Flags: FlagBound}); err != nil && !errors.Is(err, ErrTableFull) {
			t.Fatal(err)
		}
		if stop.Load() {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
}

func TestMACLookupAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	tb := NewMACTable(100, 1)
	k := randomKey(r)
	_ = tb.Set(k.port, k.vlan, k.mac, Sub{IP: 1, Flags: FlagBound})
	allocs := testing.AllocsPerRun(1000, func() {
		v := tb.View()
		for range 10 {
			if _, ok := v.Lookup(k.port, k.vlan, k.mac); !ok {
				t.Fatal("missing")
			}
			v.Lookup(k.port, k.vlan, k.mac+2)
		}
	})
	if allocs != 0 {
		t.Fatalf("View+Lookup allocate %.1f times per run", allocs)
	}
}

// BenchmarkMACTable looks up random present keys in a table filled to n
// entries (capacity n: the table's maximum load, see macLoad). B/entry is
// the slot array's memory per entry.
func BenchmarkMACTable(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		name := strconv.Itoa(n/1000) + "K"
		if n >= 1_000_000 {
			name = strconv.Itoa(n/1_000_000) + "M"
		}
		r := rand.New(rand.NewPCG(uint64(n), 7))
		tb := NewMACTable(n, r.Uint64())
		keys := make([]macKey, 0, n)
		for len(keys) < n {
			k := randomKey(r)
			if _, ok := tb.Lookup(k.port, k.vlan, k.mac); ok {
				continue
			}
			if err := tb.Set(k.port, k.vlan, k.mac, Sub{IP: uint32(len(keys)), Flags: FlagBound}); err != nil {
				b.Fatal(err)
			}
			keys = append(keys, k)
		}
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		// Batched, as the datapath looks up: 64 frames' keys at a time,
		// their cache misses overlapped. ns/op is per lookup.
		b.Run(name, func(b *testing.B) {
			packed := make([]uint64, len(keys))
			for i, k := range keys {
				packed[i] = Key(k.port, k.vlan, k.mac)
			}
			var vals [64]uint64
			var ok [64]bool
			b.ReportAllocs()
			v := tb.View()
			var sink uint64
			j := 0
			for b.Loop() {
				if j%64 == 0 {
					if j+64 > len(packed) {
						j = 0
					}
					v.LookupBatch(packed[j:j+64], vals[:], ok[:])
				}
				sink += vals[j%64]
				j++
			}
			_ = sink
			// After the loop: b.Loop's first call resets user metrics.
			b.ReportMetric(float64(tb.Bytes())/float64(n), "B/entry")
		})
		// One lookup at a time: each waits for its own miss.
		b.Run(name+"/single", func(b *testing.B) {
			b.ReportAllocs()
			v := tb.View()
			var sink uint32
			j := 0
			for b.Loop() {
				k := &keys[j]
				s, _ := v.Lookup(k.port, k.vlan, k.mac)
				sink += s.IP
				if j++; j == len(keys) {
					j = 0
				}
			}
			_ = sink
			b.ReportMetric(float64(tb.Bytes())/float64(n), "B/entry")
		})
	}
}
