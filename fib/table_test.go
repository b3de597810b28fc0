package fib

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ispmux/ispmux/internal/lfmap"
)

func TestDestPack(t *testing.T) {
	cases := []struct {
		d    Dest
		want uint64
	}{
		{Dest{}, 0},
		{Dest{Port: 15}, 0xf},
		{Dest{VLAN: 4095}, 0xfff0},
		{Dest{MAC: 0xffff_ffff_ffff}, 0xffff_ffff_ffff_0000},
		{Dest{Port: 3, VLAN: 100, MAC: 0x0200_0000_0001}, 0x0200_0000_0001_0000 | 100<<4 | 3},
	}
	for _, c := range cases {
		if got := c.d.Pack(); got != c.want {
			t.Errorf("%+v.Pack() = %#x, want %#x", c.d, got, c.want)
		}
		if got := UnpackDest(c.want); got != c.d {
			t.Errorf("UnpackDest(%#x) = %+v, want %+v", c.want, got, c.d)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		d := Dest{Port: uint8(r.IntN(16)), VLAN: uint16(r.IntN(4096)), MAC: r.Uint64() & macMask &^ groupBit} // unicast
		if got := UnpackDest(d.Pack()); got != d {
			t.Fatalf("round trip %+v -> %+v", d, got)
		}
	}
}

func TestTableKeyNeverReserved(t *testing.T) {
	for _, vrf := range []uint8{0, 1, 254, 255} {
		for _, ip := range []uint32{0, 1, 0xffffffff} {
			k := tableKey(vrf, ip)
			if k == 0 || k == ^uint64(0) {
				t.Errorf("tableKey(%d, %#x) = %#x is reserved", vrf, ip, k)
			}
		}
	}
}

func TestTableVRFsAreSeparate(t *testing.T) {
	tb := NewTable(16, 42)
	ip := uint32(10<<24 | 0<<16 | 0<<8 | 5) // 10.0.0.5 handed out by two ISPs
	a := Dest{Port: 1, VLAN: 10, MAC: 0x02_00_00_00_00_0a}
	b := Dest{Port: 2, VLAN: 20, MAC: 0x02_00_00_00_00_0b}
	if err := tb.Set(0, ip, a); err != nil {
		t.Fatal(err)
	}
	if err := tb.Set(7, ip, b); err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tb.Len())
	}
	v := tb.View()
	if got, ok := v.Lookup(0, ip); !ok || got != a {
		t.Errorf("vrf 0: %+v %v, want %+v", got, ok, a)
	}
	if got, ok := v.Lookup(7, ip); !ok || got != b {
		t.Errorf("vrf 7: %+v %v, want %+v", got, ok, b)
	}
	if _, ok := v.Lookup(1, ip); ok {
		t.Error("vrf 1 found an entry it never had")
	}
	if _, ok := v.Lookup(0, ip+1); ok {
		t.Error("neighbouring address found")
	}

	// Removing one ISP's binding leaves the other's alone.
	if !tb.Delete(0, ip) {
		t.Fatal("Delete(0) = false")
	}
	if tb.Delete(0, ip) {
		t.Fatal("second Delete(0) = true")
	}
	if _, ok := tb.Lookup(0, ip); ok {
		t.Error("vrf 0 still present")
	}
	if got, ok := tb.Lookup(7, ip); !ok || got != b {
		t.Errorf("vrf 7 after deleting vrf 0: %+v %v", got, ok)
	}

	// Set replaces.
	if err := tb.Set(7, ip, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := tb.Lookup(7, ip); got != a || tb.Len() != 1 {
		t.Errorf("after replace: %+v, Len %d", got, tb.Len())
	}

	var seen []string
	tb.Range(func(vrf uint8, ip uint32, d Dest) bool {
		seen = append(seen, fmt.Sprintf("%d %s %+v", vrf, ipString(ip), d))
		return true
	})
	if want := fmt.Sprintf("7 10.0.0.5 %+v", a); len(seen) != 1 || seen[0] != want {
		t.Errorf("Range saw %q, want [%q]", seen, want)
	}
}

func TestTableSetErrors(t *testing.T) {
	tb := NewTable(2, 1)
	for _, c := range []struct {
		vrf  uint8
		d    Dest
		want error
	}{
		{255, Dest{}, ErrInvalidVRF},
		{0, Dest{Port: 16}, ErrInvalidDest},
		{0, Dest{VLAN: 4096}, ErrInvalidDest},
		{0, Dest{MAC: 1 << 48}, ErrInvalidDest},
		{0, Dest{MAC: 0x01005e000001}, ErrInvalidDest},                       // multicast
		{0, Dest{Port: 15, VLAN: 4095, MAC: 0xffffffffffff}, ErrInvalidDest}, // would Pack to lfmap's deleted value
	} {
		if err := tb.Set(c.vrf, 1, c.d); !errors.Is(err, c.want) {
			t.Errorf("Set(%d, %+v) = %v, want %v", c.vrf, c.d, err, c.want)
		}
	}
	if tb.Len() != 0 {
		t.Fatalf("rejected Sets stored something: Len %d", tb.Len())
	}
	for ip := range uint32(2) {
		if err := tb.Set(0, ip, Dest{}); err != nil {
			t.Fatal(err)
		}
	}
	err := tb.Set(0, 99, Dest{})
	if !errors.Is(err, lfmap.ErrFull) {
		t.Fatalf("Set beyond capacity = %v, want lfmap.ErrFull", err)
	}
	t.Logf("full: %v", err)
}

// TestTableModel checks Table against a Go map through many random
// operations, including deletes that force lfmap rebuilds.
func TestTableModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const capacity = 900 // of a key space of 1200, so the fill phase hits ErrFull
	tb := NewTable(capacity, r.Uint64())
	type key struct {
		vrf uint8
		ip  uint32
	}
	model := map[key]Dest{}
	full := 0
	randKey := func() key { // a small key space so that ops collide
		return key{uint8(r.IntN(4)), 0x0a000000 | uint32(r.IntN(300))}
	}
	for i := range 50000 {
		k := randKey()
		sets := 4 // of 5 ops: fill the table up, then drain it to 40%
		if i >= 25000 {
			sets = 2
		}
		switch op := r.IntN(5); {
		case op < sets:
			d := Dest{Port: uint8(r.IntN(16)), VLAN: uint16(r.IntN(4096)), MAC: r.Uint64() & macMask &^ groupBit} // unicast
			err := tb.Set(k.vrf, k.ip, d)
			if _, present := model[k]; errors.Is(err, lfmap.ErrFull) && !present && len(model) == capacity {
				full++
				break
			}
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			model[k] = d
		default:
			_, want := model[k]
			if got := tb.Delete(k.vrf, k.ip); got != want {
				t.Fatalf("op %d: Delete(%v) = %v, want %v", i, k, got, want)
			}
			delete(model, k)
		}
		k = randKey()
		want, wok := model[k]
		if got, ok := tb.View().Lookup(k.vrf, k.ip); ok != wok || got != want {
			t.Fatalf("op %d: Lookup(%v) = %+v %v, want %+v %v", i, k, got, ok, want, wok)
		}
	}
	if tb.Len() != len(model) {
		t.Fatalf("Len %d, model %d", tb.Len(), len(model))
	}
	t.Logf("%d entries at the end, %d Sets refused as full", len(model), full)
}

func TestTableLookupAllocs(t *testing.T) {
	tb := NewTable(1024, 7)
	for i := range uint32(1000) {
		if err := tb.Set(uint8(i%8), 0x64400000+i, Dest{Port: 1, MAC: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var sink Dest
	allocs := testing.AllocsPerRun(1000, func() {
		v := tb.View()
		for i := range uint32(64) {
			d, _ := v.Lookup(uint8(i%8), 0x64400000+i)
			sink.MAC ^= d.MAC
		}
	})
	if allocs != 0 {
		t.Fatalf("View+Lookup allocates %v times per batch", allocs)
	}
}

// BenchmarkVRFLookup measures one downstream lookup on a hit, spread over
// 8 VRFs, at three table sizes (the large ones do not fit in cache).
func BenchmarkVRFLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(uint64(n), 5))
			tb := NewTable(n, r.Uint64())
			type key struct {
				vrf uint8
				ip  uint32
			}
			keys := make([]key, 0, n)
			for len(keys) < n {
				k := key{uint8(r.IntN(8)), r.Uint32()}
				if _, ok := tb.Lookup(k.vrf, k.ip); ok {
					continue
				}
				if err := tb.Set(k.vrf, k.ip, Dest{Port: uint8(len(keys) & 15), MAC: uint64(len(keys))}); err != nil {
					b.Fatal(err)
				}
				keys = append(keys, k)
			}
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			b.ReportAllocs()
			b.ResetTimer()
			var v *TableView
			var sink uint64
			for i := 0; b.Loop(); i++ {
				if i&63 == 0 {
					v = tb.View() // once per 64-packet batch
				}
				k := keys[i%n]
				d, ok := v.Lookup(k.vrf, k.ip)
				if !ok {
					b.Fatal("miss")
				}
				sink += d.MAC
			}
			_ = sink
		})
	}
}
