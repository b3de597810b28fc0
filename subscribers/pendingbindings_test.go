package subscribers

import (
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPendingBindingsRead: the listings of bindings (Bindings, BindingsOn,
// ForEachBinding, BindingsPage of every ISP and of one) see the pending
// journal records without checkpointing them: a pending value replaces
// bbolt's for its key, a pending key bbolt lacks is listed in its place,
// pages neither repeat nor skip a key across the two; and they list the
// same after the checkpoint.
func TestPendingBindingsRead(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const inDB, changed, added = 200, 50, 100
	for i := range inDB {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	moved := func(i int) Binding {
		b := testBinding(i)
		b.IP = netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)})
		return b
	}
	for i := range changed {
		if err := s.CommitBinding(moved(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := inDB; i < inDB+added; i++ {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.pendingN.Load(); got != changed+added {
		t.Fatalf("%d records pending, want %d", got, changed+added)
	}
	writes := s.writes.Load()

	type listing struct {
		all, on, walk, paged, pagedISP []Binding
	}
	list := func() listing {
		var l listing
		var err error
		if l.all, err = s.Bindings(); err != nil {
			t.Fatal(err)
		}
		if l.on, err = s.BindingsOn("acc1"); err != nil {
			t.Fatal(err)
		}
		if err := s.ForEachBinding(func(b Binding) error { l.walk = append(l.walk, b); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			isp   string
			limit int
			into  *[]Binding
		}{{"", 37, &l.paged}, {"isp-1", 13, &l.pagedISP}} {
			after := ""
			for pages := 0; ; pages++ {
				bs, next, err := s.BindingsPage(c.isp, after, c.limit)
				if err != nil || pages > 100 {
					t.Fatalf("BindingsPage(%q, %q): %v after %d pages", c.isp, after, err, pages)
				}
				*c.into = append(*c.into, bs...)
				if next == "" {
					break
				}
				after = next
			}
		}
		return l
	}
	before := list()
	if s.writes.Load() != writes || s.pendingN.Load() != changed+added {
		t.Fatalf("the listings checkpointed (writes %d -> %d, %d pending)", writes, s.writes.Load(), s.pendingN.Load())
	}
	want := map[MAC]Binding{}
	for i := range inDB + added {
		b := testBinding(i)
		if i < changed {
			b = moved(i)
		}
		want[b.MAC] = b
	}
	for name, bs := range map[string][]Binding{"Bindings": before.all, "ForEachBinding": before.walk, "BindingsPage": before.paged} {
		if len(bs) != len(want) {
			t.Errorf("%s: %d bindings, want %d", name, len(bs), len(want))
		}
		for i, b := range bs {
			if w := want[b.MAC]; b.IP != w.IP || b.ISP != w.ISP {
				t.Errorf("%s: %s at %s (%s), want %s (%s)", name, b.MAC, b.IP, b.ISP, w.IP, w.ISP)
			}
			if i > 0 && string(bindingKey(bs[i-1].Access, bs[i-1].VLAN, bs[i-1].MAC)) >= string(bindingKey(b.Access, b.VLAN, b.MAC)) {
				t.Errorf("%s: %s after %s, not in key order", name, b.MAC, bs[i-1].MAC)
			}
		}
	}
	if !reflect.DeepEqual(before.all, before.walk) || !reflect.DeepEqual(before.all, before.paged) {
		t.Errorf("Bindings, ForEachBinding and BindingsPage differ")
	}
	var on, isp1 int
	for _, b := range before.all {
		if b.Access == "acc1" {
			on++
		}
		if b.ISP == "isp-1" {
			isp1++
		}
	}
	if len(before.on) != on || len(before.pagedISP) != isp1 {
		t.Errorf("BindingsOn(acc1) %d, want %d; BindingsPage(isp-1) %d, want %d", len(before.on), on, len(before.pagedISP), isp1)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if s.pendingN.Load() != 0 {
		t.Fatalf("%d pending after the checkpoint", s.pendingN.Load())
	}
	if after := list(); !reflect.DeepEqual(before, after) {
		t.Errorf("the listings differ after the checkpoint")
	}
}

// TestPendingBindingsConcurrent: pages of bindings read while writers
// commit and background checkpoints (every 16 records here) move the
// records into bbolt: every listing is in key order without a repeat and
// holds every binding whose commit returned before it started (by key,
// not only by count); none of the reads checkpoints through the group
// commit.
func TestPendingBindingsConcurrent(t *testing.T) {
	withMaxPending(t, 16, nil, nil)
	s, _ := openTest(t, Options{NoSync: true})
	const n = 1200
	var returned [n]atomic.Bool
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; i < n; i += 3 {
				if err := s.CommitBinding(testBinding(i)); err != nil {
					t.Error(err)
					return
				}
				returned[i].Store(true)
				done.Add(1)
			}
		})
	}
	listings := 0
	for {
		finished := done.Load() == n
		var before []int
		for i := range n {
			if returned[i].Load() {
				before = append(before, i)
			}
		}
		var keys []string
		listed := map[string]bool{}
		after := ""
		for {
			bs, next, err := s.BindingsPage("", after, 37)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				k := string(bindingKey(b.Access, b.VLAN, b.MAC))
				keys = append(keys, k)
				listed[k] = true
			}
			if next == "" {
				break
			}
			after = next
		}
		listings++
		for i := 1; i < len(keys); i++ {
			if keys[i-1] >= keys[i] {
				t.Fatalf("listing %d: key %q after %q", listings, keys[i], keys[i-1])
			}
		}
		for _, i := range before {
			if b := testBinding(i); !listed[string(bindingKey(b.Access, b.VLAN, b.MAC))] {
				t.Fatalf("listing %d: binding %d (%s) missing, its commit had returned before it", listings, i, b.MAC)
			}
		}
		if finished {
			if len(keys) != n {
				t.Fatalf("last listing: %d bindings, want %d", len(keys), n)
			}
			break
		}
	}
	wg.Wait()
	if s.writes.Load() > n {
		t.Errorf("%d durable writes for %d commits: the reads checkpointed", s.writes.Load(), n)
	}
	t.Logf("%d listings", listings)
}

// TestPendingBindingsSnapshot: a listing is the store at one instant. Its
// copy of the pending bindings holds K; between the copy and its read
// transaction's begin (testHookSnapshot) K is deleted, then Y committed
// and checkpointed. Had those bbolt transactions committed in between,
// the listing would show K (from the copy) beside Y (from bbolt), a state
// that never was (found in review). They wait for the listing's begin:
// it shows K without Y, and the next listing Y without K.
func TestPendingBindingsSnapshot(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	kb, yb := testBinding(1), testBinding(2)
	if err := s.CommitBinding(kb); err != nil {
		t.Fatal(err)
	}
	if s.pendingN.Load() != 1 {
		t.Fatalf("%d records pending, want K's", s.pendingN.Load())
	}
	hook, writes := duringHook(func() error {
		_, err := s.DeleteBinding(kb.Access, kb.VLAN, kb.MAC)
		if err == nil {
			err = s.CommitBinding(yb)
		}
		if err == nil {
			err = s.checkpoint()
		}
		return err
	})
	testHookSnapshot = hook
	t.Cleanup(func() { testHookSnapshot = nil })
	macs := func() map[MAC]bool {
		bs, err := s.Bindings()
		if err != nil {
			t.Fatal(err)
		}
		m := map[MAC]bool{}
		for _, b := range bs {
			m[b.MAC] = true
		}
		return m
	}
	if got := macs(); !got[kb.MAC] || got[yb.MAC] {
		t.Errorf("listing during the writes: K %v, Y %v; want K without Y", got[kb.MAC], got[yb.MAC])
	}
	if err := writes(); err != nil {
		t.Fatal(err)
	}
	if got := macs(); got[kb.MAC] || !got[yb.MAC] {
		t.Errorf("listing after the writes: K %v, Y %v; want Y without K", got[kb.MAC], got[yb.MAC])
	}
}

// TestPendingBindingsSnapshotBg: K (v1) pending; between a listing's copy
// and its begin, K is rewritten (v2) and Y committed, and a background
// checkpoint (every 3 records) writes K v2 and Y into bbolt. The listing
// is the instant of the copy: K v1 without Y (without the checkpoint's
// hold on s.bmu it showed K v1 beside Y, found in review).
func TestPendingBindingsSnapshotBg(t *testing.T) {
	withMaxPending(t, 3, nil, nil)
	s, _ := openTest(t, Options{NoSync: true})
	kb, yb := testBinding(1), testBinding(2)
	kb2 := kb
	kb2.Expires = kb.Expires.Add(time.Hour)
	if err := s.CommitBinding(kb); err != nil {
		t.Fatal(err)
	}
	hook, writes := duringHook(func() error {
		err := s.CommitBinding(kb2)
		if err == nil {
			err = s.CommitBinding(yb)
		}
		for dl := time.Now().Add(2 * time.Second); err == nil && s.bgCheckpoints.Load() == 0 && time.Now().Before(dl); {
			time.Sleep(time.Millisecond)
		}
		return err
	})
	testHookSnapshot = hook
	t.Cleanup(func() { testHookSnapshot = nil })
	bs, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	var gotK, gotY bool
	var kExp time.Time
	for _, b := range bs {
		if b.MAC == kb.MAC {
			gotK, kExp = true, b.Expires
		}
		if b.MAC == yb.MAC {
			gotY = true
		}
	}
	if err := writes(); err != nil {
		t.Fatal(err)
	}
	if s.bgCheckpoints.Load() == 0 {
		t.Fatal("no background checkpoint ran: the test tests nothing")
	}
	if !gotK || gotY || !kExp.Equal(kb.Expires) {
		t.Errorf("listing: K %v (expires %v, v1 %v), Y %v; want K v1 without Y", gotK, kExp, kb.Expires, gotY)
	}
}

// TestPendingBindingsSnapshotCommitted: K2 in bbolt, K1 pending; one
// transaction deletes both. A listing begun between that transaction's
// commit and the drop of the pending records (testHookCommitted) waits
// for the drop: it shows both or neither, never K1 alone (from its copy
// of the pending records) as it did when s.bmu was released before the
// drop (found in review).
func TestPendingBindingsSnapshotCommitted(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	k1, k2 := testBinding(1), testBinding(2)
	if err := s.CommitBinding(k2); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBinding(k1); err != nil {
		t.Fatal(err)
	}
	if s.pendingN.Load() != 1 {
		t.Fatal("K1 not pending")
	}
	var got1, got2 bool // set by the listing, read after it returned
	hook, listed := duringHook(func() error {
		bs, err := s.Bindings()
		for _, b := range bs {
			got1 = got1 || b.MAC == k1.MAC
			got2 = got2 || b.MAC == k2.MAC
		}
		return err
	})
	testHookCommitted = hook
	t.Cleanup(func() { testHookCommitted = nil })
	d1, d2 := bindingDelete(k1.Access, k1.VLAN, k1.MAC), bindingDelete(k2.Access, k2.VLAN, k2.MAC)
	if err := s.update(func(tx *bolt.Tx) error {
		if _, err := d1(tx); err != nil {
			return err
		}
		_, err := d2(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := listed(); err != nil {
		t.Fatal(err)
	}
	if got1 != got2 {
		t.Errorf("listing: K1 %v K2 %v: a state that never was", got1, got2)
	}
}

// duringHook returns a test hook that, at its first call, runs fn in a
// goroutine and waits for it up to 300 ms: long enough for fn to finish
// were it not held back by the lock under test (a fixed wait only in
// that it would be); and a wait that returns fn's error once it finished.
func duringHook(fn func() error) (hook func(), wait func() error) {
	done := make(chan error, 1)
	var once sync.Once
	hook = func() {
		once.Do(func() {
			go func() { done <- fn() }()
			select {
			case err := <-done:
				done <- err
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
	wait = func() error {
		err := <-done
		done <- err
		return err
	}
	return hook, wait
}
