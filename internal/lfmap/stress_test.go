package lfmap

import (
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStress (LFMAP_STRESS_SECONDS sets its length, 2 s by default): one
// writer (model-checked) with Store/Delete/revive, rebuilds and growths;
// readers check per-key linearizability with a per-key seqlock published
// by the writer around each op:
//
//	seq odd: an op on the key is in progress
//	seq even: state[k] (present, val) is the key's state
//
// A reader reads seq (s1), then loads a View, looks up, reads seq (s2). If
// s1 == s2 and even, the lookup must return exactly the state. Any value
// seen, on any View, must encode its key (val>>32 == k); pinned keys
// (stored once, never deleted or updated) must always be found with their
// value.
//
// In the cases with a start below the capacity, the map starts sized for
// start entries and grows as the writer fills it; every 5 rounds of ops
// the writer replaces it with a fresh one holding only the pinned keys
// (every key's seq odd around the swap, as around an op), so that maps
// grow again and again under the readers through the whole run.

type keyState struct {
	seq atomic.Uint64
	val atomic.Uint64 // 0 = absent
}

func stressDuration() time.Duration {
	if s := os.Getenv("LFMAP_STRESS_SECONDS"); s != "" {
		n, _ := strconv.Atoi(s)
		return time.Duration(n) * time.Second
	}
	return 2 * time.Second
}

func TestStress(t *testing.T) {
	cases := []struct {
		capacity, keys, pinned int
		load                   Load
		start                  int // entries of the first array
	}{
		{4, 12, 1, defaultLoad, 4},
		{16, 40, 4, defaultLoad, 16},
		{64, 100, 8, Load{19, 20}, 64},
		{64, 300, 8, defaultLoad, 64},
		{500, 700, 50, Load{9, 10}, 500},
		{500, 520, 50, Load{1, 2}, 500},
		// Growing.
		{16, 40, 1, defaultLoad, 1},
		{64, 100, 4, Load{19, 20}, 2},
		{500, 700, 8, Load{1, 2}, 4},
		{500, 520, 50, Load{9, 10}, 8},
	}
	d := stressDuration() / time.Duration(len(cases))
	forEachChunkImpl(t, func(t *testing.T) {
		for ci, tc := range cases {
			t.Run(strconv.Itoa(ci), func(t *testing.T) {
				stressOne(t, tc.capacity, tc.keys, tc.pinned, tc.load, tc.start, d, uint64(ci))
			})
		}
	})
}

func keyOf(i int) uint64 { return uint64(i+1)*0x9e3779b97f4a7c15>>32 | 1 } // 32-bit keys, odd, nonzero

func stressOne(t *testing.T, capacity, nkeys, pinned int, load Load, start int, dur time.Duration, seed uint64) {
	keys := make([]uint64, nkeys)
	idx := map[uint64]int{}
	for i := range keys {
		keys[i] = keyOf(i)
		if _, dup := idx[keys[i]]; dup {
			t.Fatal("dup key")
		}
		idx[keys[i]] = i
	}
	st := make([]keyState, nkeys)
	// fresh returns a new map and its model holding the pinned keys
	// 0..pinned-1.
	fresh := func() (*Map, *model) {
		m := newMap(capacity, load, seed*7919+1, start)
		md := &model{m: map[uint64]uint64{}, cap: capacity}
		for i := range pinned {
			v := keys[i]<<32 | 0xabc
			if err := m.Store(keys[i], v); err != nil {
				t.Fatal(err)
			}
			md.m[keys[i]] = v
		}
		return m, md
	}
	m, md := fresh()
	for i := range pinned {
		st[i].val.Store(md.m[keys[i]])
	}
	// cur is the map the readers use; only the writer replaces it.
	var cur atomic.Pointer[Map]
	cur.Store(m)
	rebuilds, grows, maps := 0, 0, 1
	var stop atomic.Bool
	var fails atomic.Int64
	fail := func(format string, args ...any) {
		if fails.Add(1) < 10 {
			t.Errorf(format, args...)
		}
		stop.Store(true)
	}
	var checked, strong atomic.Int64
	var wg sync.WaitGroup
	readers := max(3, runtime.GOMAXPROCS(0)+1)
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(r)))
			var bk, bv, gv [200]uint64
			var bok, gok [200]bool
			var s1 [200]uint64
			var nc, ns int64
			check := func(what string, k uint64, i int, v uint64, ok bool, s1 uint64, v0 *View) {
				nc++
				if k == 0 || k == ^uint64(0) {
					if ok || v != 0 {
						fail("%s reserved key %#x: (%#x,%v)", what, k, v, ok)
					}
					return
				}
				if ok && v>>32 != k {
					fail("%s(%#x) = %#x: value of key %#x", what, k, v, v>>32)
				}
				if !ok && v != 0 {
					fail("%s(%#x) absent but val %#x", what, k, v)
				}
				if i < 0 {
					return
				}
				if i < pinned && (!ok || v != keys[i]<<32|0xabc) {
					fail("%s pinned key %#x: (%#x,%v)", what, k, v, ok)
				}
				if v0 == nil {
					return
				}
				want := st[i].val.Load()
				s2 := st[i].seq.Load()
				if s1 != s2 || s1&1 != 0 {
					return
				}
				ns++
				if (want != 0) != ok || (ok && want != v) {
					fail("%s(%#x) = (%#x,%v), stable state (%#x,%v) seq %d", what, k, v, ok, want, want != 0, s1)
				}
			}
			for !stop.Load() {
				n := 1 + rng.IntN(len(bk))
				ii := make([]int, n)
				for j := range n {
					switch rng.IntN(40) {
					case 0:
						bk[j], ii[j] = 0, -1
					case 1:
						bk[j], ii[j] = ^uint64(0), -1
					case 2:
						bk[j], ii[j] = rng.Uint64()|1<<40, -1 // absent
					default:
						ii[j] = rng.IntN(nkeys)
						bk[j] = keys[ii[j]]
					}
				}
				for j := range n {
					if ii[j] >= 0 {
						s1[j] = st[ii[j]].seq.Load()
					}
				}
				m := cur.Load() // after s1: a swap since changes seq
				v := m.View()   // after s1: strong checks valid
				for j := range n {
					bv[j], bok[j], gv[j], gok[j] = 0x5555, true, 0x5555, true
				}
				v.LookupBatch(bk[:n], bv[:n], bok[:n])
				for c := 0; c < n; c += MaxBatch {
					e := min(n, c+MaxBatch)
					v.lookupChunkGo(bk[c:e], gv[c:e], gok[c:e])
				}
				for j := range n {
					check("LookupBatch", bk[j], ii[j], bv[j], bok[j], s1[j], v)
					check("lookupChunkGo", bk[j], ii[j], gv[j], gok[j], s1[j], v)
				}
				// Single lookups on the same view.
				for j := range min(n, 16) {
					if ii[j] >= 0 {
						s1[j] = st[ii[j]].seq.Load()
					}
					val, ok := v.Lookup(bk[j])
					// v was loaded before this s1: strong check invalid.
					check("Lookup", bk[j], ii[j], val, ok, s1[j], nil)
				}
				for j := range min(n, 16) {
					var sa uint64
					if ii[j] >= 0 {
						sa = st[ii[j]].seq.Load()
					}
					mm := cur.Load() // after sa
					val, ok := mm.Lookup(bk[j])
					check("Map.Lookup", bk[j], ii[j], val, ok, sa, mm.View())
				}
				if rng.IntN(50) == 0 {
					// Range
					pre := make([]uint64, nkeys)
					for i := range pre {
						pre[i] = st[i].seq.Load()
					}
					seen := map[uint64]uint64{}
					cur.Load().Range(func(k, val uint64) bool { // after pre
						if _, dup := seen[k]; dup {
							fail("Range: key %#x twice", k)
						}
						seen[k] = val
						if val>>32 != k {
							fail("Range: %#x=%#x", k, val)
						}
						return true
					})
					for i, k := range keys {
						val, ok := seen[k]
						if i < pinned && !ok {
							fail("Range: pinned %#x missing", k)
						}
						want := st[i].val.Load()
						if s := st[i].seq.Load(); s == pre[i] && s&1 == 0 {
							if (want != 0) != ok || (ok && want != val) {
								fail("Range %#x: (%#x,%v), stable state %#x", k, val, ok, want)
							}
						}
					}
				}
			}
			checked.Add(nc)
			strong.Add(ns)
		})
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	deadline := time.Now().Add(dur)
	var wseq uint64
	ops := 0
	for round := 1; time.Now().Before(deadline) && !stop.Load(); round++ {
		if start < capacity && round%5 == 0 {
			// A fresh map, to grow again under the readers.
			for i := range st {
				st[i].seq.Add(1)
			}
			rebuilds, grows = rebuilds+m.rebuilds, grows+m.grows
			m, md = fresh()
			maps++
			cur.Store(m)
			for i := range st {
				st[i].val.Store(md.m[keys[i]]) // 0 but the pinned
				st[i].seq.Add(1)
			}
		}
		for range 200 {
			ops++
			i := pinned + rng.IntN(nkeys-pinned)
			k := keys[i]
			st[i].seq.Add(1) // odd: in progress
			if rng.IntN(3) == 0 {
				got, want := m.Delete(k), md.delete(k)
				if got != want {
					fail("Delete(%#x) = %v, model %v", k, got, want)
				}
			} else {
				wseq++
				v := k<<32 | wseq&0xffffffff
				if v == 0 {
					v = k << 32
				}
				err, want := m.Store(k, v), md.store(k, v)
				if err != want {
					fail("Store(%#x) = %v, model %v", k, err, want)
				}
			}
			if v, ok := md.m[k]; ok {
				st[i].val.Store(v)
			} else {
				st[i].val.Store(0)
			}
			st[i].seq.Add(1) // even: stable
			if m.Len() != len(md.m) {
				fail("Len %d model %d", m.Len(), len(md.m))
			}
			if m.used > m.maxUsed || m.used >= len(m.View().slots) || m.Len() > m.entries {
				fail("used %d maxUsed %d slots %d; live %d, sized for %d", m.used, m.maxUsed, len(m.View().slots), m.Len(), m.entries)
			}
		}
		if rng.IntN(20) == 0 {
			var probe []uint64
			checkSame(t, m, md, probe)
		}
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if fails.Load() == 0 {
		checkSame(t, m, md, nil)
	}
	rebuilds, grows = rebuilds+m.rebuilds, grows+m.grows
	t.Logf("cap %d keys %d start %d: %d ops, %d maps, %d rebuilds (%d growths), %d checks, %d strong",
		capacity, nkeys, start, ops, maps, rebuilds, grows, checked.Load(), strong.Load())
	if rebuilds-grows == 0 && nkeys > capacity*3/2 {
		t.Errorf("no rebuild")
	}
	if start < capacity && grows < maps {
		t.Errorf("%d maps grew %d times: want each to grow under the readers", maps, grows)
	}
	_ = errors.Is
}
