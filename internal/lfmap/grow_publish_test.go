package lfmap

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGrowPublishesCopied: a reader that loads the count of keys stored,
// then the View, must find every one of those keys in it, however it
// races with a growth. The writer fills maps of 1<<15 entries from an
// array for 1 (15 growths each, the last ones copying thousands of
// entries), so a growth that published its array before it finished
// copying would show a reader a partial array for hundreds of
// microseconds. TestStress catches that only in some runs (its growing
// maps copy a few hundred entries at most); this test catches it in every
// run, without -race.
func TestGrowPublishesCopied(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs a reader running beside the writer")
	}
	const capacity = 1 << 15
	key := func(i uint64) uint64 { return i*0x9e3779b97f4a7c15 | 1 }
	dur := 500 * time.Millisecond
	if testing.Short() {
		dur = 200 * time.Millisecond
	}
	var (
		cur    atomic.Pointer[Map]
		stored atomic.Uint64 // keys 1..stored are in cur's map
		stop   atomic.Bool
		misses atomic.Int64
		checks atomic.Int64
		wg     sync.WaitGroup
	)
	cur.Store(newMap(capacity, Load{Num: 1, Den: 2}, 7, 1))
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		keys := make([]uint64, 16)
		vals := make([]uint64, 16)
		oks := make([]bool, 16)
		for !stop.Load() {
			m := cur.Load()
			n := stored.Load() // before the View: keys 1..n are in it
			v := m.View()
			if n == 0 || cur.Load() != m {
				continue
			}
			keys[0] = key(n)
			for j := 1; j < len(keys); j++ {
				keys[j] = key(1 + rng.Uint64N(n))
			}
			v.LookupBatch(keys, vals, oks)
			for j, k := range keys {
				if _, ok := v.Lookup(k); !ok || !oks[j] {
					misses.Add(1)
				}
			}
			checks.Add(1)
		}
	}()
	deadline := time.Now().Add(dur)
	maps := 0
	for time.Now().Before(deadline) {
		m := cur.Load()
		for i := uint64(1); i <= capacity; i++ {
			if err := m.Store(key(i), i); err != nil {
				t.Fatal(err)
			}
			stored.Store(i)
		}
		maps++
		// A fresh map: the count first, so that the reader never pairs
		// the old count with the new map.
		stored.Store(0)
		cur.Store(newMap(capacity, Load{Num: 1, Den: 2}, 7, 1))
	}
	stop.Store(true)
	wg.Wait()
	if n := misses.Load(); n != 0 {
		t.Fatalf("%d keys stored before the View was loaded missing from it (%d checks, %d maps)", n, checks.Load(), maps)
	}
	t.Logf("%d checks over %d maps grown to %d", checks.Load(), maps, capacity)
}
