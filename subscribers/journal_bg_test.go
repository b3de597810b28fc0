package subscribers

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// withMaxPending sets journalMaxPending (and the checkpoint test hooks)
// for one test.
func withMaxPending(t *testing.T, n int, before, after func()) {
	t.Helper()
	oldN, oldB, oldA := journalMaxPending, testHookCheckpoint, testHookCheckpointed
	journalMaxPending, testHookCheckpoint, testHookCheckpointed = n, before, after
	t.Cleanup(func() {
		journalMaxPending, testHookCheckpoint, testHookCheckpointed = oldN, oldB, oldA
	})
}

// TestJournalBackgroundCheckpoint: background checkpoints (every 16
// records here) run beside four writers of journaled bindings and
// events. A crash at the instant each checkpoint's transaction has
// committed, while the writers go on in the journal's other file,
// loses nothing acknowledged, and the event log has no gap, nor has
// any ISP's sequence, every event reading back with the numbers it was
// returned with; the appends never waited for a checkpoint (no group
// commit transaction ran).
func TestJournalBackgroundCheckpoint(t *testing.T) {
	numberFromOne(t)
	const n = 1200
	var acked [n]atomic.Bool
	seqs := make([]atomic.Uint64, n)
	returned := make([]Event, n) // read after the writers are done
	type crash struct {
		path  string
		acked []int // bindings acknowledged before the copy began
	}
	var (
		cmu     sync.Mutex
		crashes []crash
		s       *Store
		path    string
	)
	withMaxPending(t, 16, nil, func() {
		cmu.Lock()
		defer cmu.Unlock()
		if len(crashes) >= 6 {
			return
		}
		var c crash
		for i := range n {
			if acked[i].Load() {
				c.acked = append(c.acked, i)
			}
		}
		c.path = copyStore(t, path, nil)
		crashes = append(crashes, c)
	})
	s, path = openTest(t, Options{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				b := testBinding(i)
				e, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP})
				if err != nil {
					t.Error(err)
					return
				}
				seqs[i].Store(e.Seq)
				returned[i] = e
				acked[i].Store(true)
			}
		})
	}
	wg.Wait()
	if s.bgCheckpoints.Load() == 0 {
		t.Fatal("no background checkpoint ran")
	}
	// No write went through a bbolt transaction of the group commit
	// (a checkpoint there counts as a write): the appends never waited
	// for a checkpoint.
	if w := s.writes.Load(); w != n {
		t.Errorf("group commit wrote %d writes, want %d (each binding once, in the journal)", w, n)
	}
	cmu.Lock()
	copies := crashes
	cmu.Unlock()
	if len(copies) == 0 {
		t.Fatal("no crash copy taken")
	}
	for k, c := range copies {
		cs, err := Open(c.path, Options{NoSync: true})
		if err != nil {
			t.Fatalf("crash %d: open: %v", k, err)
		}
		for _, i := range c.acked {
			want := testBinding(i)
			if got, err := cs.Binding(want.Access, want.VLAN, want.MAC); err != nil || !bindingEqual(got, want) {
				t.Errorf("crash %d: acknowledged binding %d: %+v, %v", k, i, got, err)
			}
		}
		evs, err := cs.Events(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range evs {
			if e.Seq != uint64(j+1) {
				t.Fatalf("crash %d: event %d has seq %d: the log has a gap", k, j, e.Seq)
			}
		}
		got := map[uint64]MAC{}
		for _, e := range evs {
			got[e.Seq] = e.MAC
		}
		for _, i := range c.acked {
			if got[seqs[i].Load()] != testBinding(i).MAC {
				t.Errorf("crash %d: binding %d's event %d missing or another's", k, i, seqs[i].Load())
			}
		}
		var ret []Event
		for _, i := range c.acked {
			ret = append(ret, returned[i])
		}
		checkISPNumbering(t, fmt.Sprintf("crash %d", k), cs, ret)
		cs.Close()
	}
	// And the store itself, closed and opened again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if all, err := r.Bindings(); err != nil || len(all) != n {
		t.Fatalf("after Close and Open: %d bindings, %v; want %d", len(all), err, n)
	}
}

// TestJournalBackgroundCheckpointOvertaken: a release checkpointed by the
// group commit while a background checkpoint of the released binding's
// put has not yet run its transaction: the background transaction must
// skip the put (the file holds those LSNs already), or the released
// binding would be back, in the store and after a crash.
func TestJournalBackgroundCheckpointOvertaken(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	withMaxPending(t, 4, func() {
		started <- struct{}{}
		<-release
	}, nil)
	s, path := openTest(t, Options{})
	for i := range 4 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-started // the journal swapped files; the checkpoint waits
	x := testBinding(0)
	if found, err := s.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil || !found {
		t.Fatalf("DeleteBinding = %v, %v", found, err)
	}
	if err := s.CommitBinding(testBinding(4)); err != nil {
		t.Fatal(err)
	}
	close(release)
	// Wait for the background checkpoint's transaction (which finds the
	// file holding its LSNs already).
	for deadline := time.Now().Add(10 * time.Second); s.bgCheckpoints.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint did not end")
		}
		time.Sleep(time.Millisecond)
	}
	check := func(what string, c *Store) {
		t.Helper()
		if _, err := c.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: released binding: %v, want ErrNotFound", what, err)
		}
		for i := 1; i <= 4; i++ {
			want := testBinding(i)
			if got, err := c.Binding(want.Access, want.VLAN, want.MAC); err != nil || !bindingEqual(got, want) {
				t.Errorf("%s: binding %d: %+v, %v", what, i, got, err)
			}
		}
	}
	check("store", s)
	c, _ := crashCopy(t, path)
	check("after a crash", c)
	if all, err := s.Bindings(); err != nil || len(all) != 4 {
		t.Errorf("Bindings: %d, %v; want 4", len(all), err)
	}
}

// TestJournalBackgroundCheckpointCrash: a crash while a background
// checkpoint has not committed (its records only in the journal's first
// file, later ones in the second), and one after it committed but before
// the leader knew: both files replay, in LSN order, each record once,
// the events with the Seq and ISPSeq they were returned with.
func TestJournalBackgroundCheckpointCrash(t *testing.T) {
	numberFromOne(t)
	for _, when := range []string{"before", "after"} {
		t.Run(when, func(t *testing.T) {
			hold := make(chan struct{})
			at := make(chan struct{}, 1)
			hook := func() {
				at <- struct{}{}
				<-hold
			}
			if when == "before" {
				withMaxPending(t, 4, hook, nil)
			} else {
				withMaxPending(t, 4, nil, hook)
			}
			s, path := openTest(t, Options{})
			defer close(hold)
			var returned []Event
			commit := func(i int) {
				t.Helper()
				b := testBinding(i)
				e, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP})
				if err != nil {
					t.Fatal(err)
				}
				returned = append(returned, e)
			}
			for i := range 4 {
				commit(i)
			}
			<-at
			for i := 4; i < 7; i++ { // into the journal's second file
				commit(i)
			}
			c, _ := crashCopy(t, path)
			checkISPNumbering(t, "after the crash", c, returned)
			for i := range 7 {
				want := testBinding(i)
				if got, err := c.Binding(want.Access, want.VLAN, want.MAC); err != nil || !bindingEqual(got, want) {
					t.Errorf("binding %d after the crash: %+v, %v", i, got, err)
				}
			}
			evs, err := c.Events(0, 0)
			if err != nil || len(evs) != 7 {
				t.Fatalf("events after the crash: %d, %v; want 7", len(evs), err)
			}
			for j, e := range evs {
				if e.Seq != uint64(j+1) || e.MAC != testBinding(j).MAC {
					t.Errorf("event %d: seq %d of %v", j, e.Seq, e.MAC)
				}
			}
			// A release through the group commit meanwhile: its
			// transaction applies only the records the file does not
			// hold yet (after: the checkpoint's are there already).
			x := testBinding(1)
			if found, err := s.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil || !found {
				t.Fatalf("DeleteBinding = %v, %v", found, err)
			}
			e, err := s.AddEvent(Event{Kind: EventReleased, MAC: x.MAC, ISP: x.ISP})
			if err != nil {
				t.Fatal(err)
			}
			returned = append(returned, e)
			c, _ = crashCopy(t, path)
			checkISPNumbering(t, "after the release", c, returned)
			if _, err := c.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
				t.Errorf("released binding after the crash: %v, want ErrNotFound", err)
			}
			if evs, err := c.Events(0, 0); err != nil || len(evs) != 8 || evs[7].Seq != 8 {
				t.Errorf("events after the release: %d, %v; want 8", len(evs), err)
			}
		})
	}
}

// TestMergeRuns: the replay's merge of the two files' runs.
func TestMergeRuns(t *testing.T) {
	run := func(lsns ...uint64) []jrec {
		var r []jrec
		for _, l := range lsns {
			r = append(r, jrec{lsn: l})
		}
		return r
	}
	lsns := func(rs []*jrec) []uint64 {
		var l []uint64
		for _, r := range rs {
			l = append(l, r.lsn)
		}
		return l
	}
	for _, tc := range []struct {
		name    string
		a, b    []jrec
		applied uint64
		want    []uint64
		err     string
	}{
		{"one file", run(1, 2, 3), nil, 0, []uint64{1, 2, 3}, ""},
		{"second file follows", run(1, 2, 3), run(4, 5), 2, []uint64{3, 4, 5}, ""},
		{"first file follows", run(6, 7), run(3, 4, 5), 3, []uint64{4, 5, 6, 7}, ""},
		{"old generation skipped", run(1, 2), run(10, 11), 9, []uint64{10, 11}, ""},
		{"all checkpointed", run(1, 2), run(3), 3, nil, ""},
		{"stops at a hole (Open then empties both files)", run(4, 5), run(7, 8), 3, []uint64{4, 5}, ""},
		{"starts late", run(5, 6), nil, 3, nil, "start at LSN 5"},
		{"LSN twice", run(4, 5), run(5, 6), 3, nil, "both of its files"},
	} {
		got, err := mergeRuns([2][]jrec{tc.a, tc.b}, tc.applied)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && !slices.Equal(lsns(got), tc.want):
			t.Errorf("%s: %v, want %v", tc.name, lsns(got), tc.want)
		}
	}
}

// waitBG waits until n background checkpoints have ended.
func waitBG(t *testing.T, s *Store, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.bgCheckpoints.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint did not end")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestJournalSecondFileSchema: a crash can leave acknowledged records in
// the journal's second file, which an ispmux of schema 7 does not read:
// it would lose them, hand their LSNs out again, and after an upgrade
// the second file's stale run would replay over its writes. So the file
// says schema 8, which that ispmux refuses; the rest of this test plays
// what it would do (the second file hidden from one Open) if it did not.
// (Found in review.)
func TestJournalSecondFileSchema(t *testing.T) {
	withMaxPending(t, 4, nil, nil)
	s, path := openTest(t, Options{NoSync: true})
	for i := range 4 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitBG(t, s, 1)          // journal-lsn 4 in bbolt
	for i := 4; i < 7; i++ { // LSN 5..7 in STATE.journal.1, acknowledged
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	p := copyStore(t, path, nil) // crash
	if v := rawSchema(t, p); len(v) == 1 && v[0] > 7 {
		return // an ispmux of schema 7 refuses the file
	}
	hidden := p + ".journal.1.hidden"
	if err := os.Rename(p+".journal.1", hidden); err != nil {
		t.Fatal(err)
	}
	old, err := Open(p, Options{NoSync: true}) // the older ispmux
	if err != nil {
		t.Fatal(err)
	}
	x := testBinding(5)
	if _, err := old.Binding(x.Access, x.VLAN, x.MAC); err != nil {
		t.Errorf("acknowledged binding 5 lost by a schema-7 reader of the store: %v", err)
	}
	rebindThenDelete(t, old, x) // LSN 5 again, then a delete
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(p + ".journal.1")
	if err := os.Rename(hidden, p+".journal.1"); err != nil {
		t.Fatal(err)
	}
	n, err := Open(p, Options{NoSync: true}) // upgraded again
	if err != nil {
		t.Fatalf("open after the upgrade: %v", err)
	}
	defer n.Close()
	if got, err := n.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("binding deleted under the older version back after the upgrade: ip %v, %v", got.IP, err)
	}
}

// TestJournalDamagedRecordNoChain: a damaged record in the first file
// ends the replay there, before the second file's records; Open must
// empty both files before it hands those LSNs out again, or the second
// file's stale run chains to the new records after the next crash and a
// binding deleted meanwhile comes back. (Found in review.)
func TestJournalDamagedRecordNoChain(t *testing.T) {
	at, release := make(chan struct{}, 16), make(chan struct{})
	withMaxPending(t, 4, func() { at <- struct{}{}; <-release }, nil)
	s, path := openTest(t, Options{NoSync: true})
	defer close(release)
	for i := range 4 { // LSN 1..4, STATE.journal
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-at
	for i := 4; i < 6; i++ { // LSN 5, 6, STATE.journal.1
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if recLen(testBinding(0)) != recLen(testBinding(1)) {
		t.Fatal("record lengths differ")
	}
	off := 2 * recLen(testBinding(0))                             // LSN 3's record
	p := copyStore(t, path, func(j []byte) { j[off+20] ^= 0xff }) // damaged
	c, err := Open(p, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.jr.lsn != 2 {
		t.Fatalf("replayed up to LSN %d, want 2", c.jr.lsn)
	}
	x := testBinding(5)
	rebindThenDelete(t, c, x)                                // LSN 3 again, then a delete
	if err := c.CommitBinding(testBinding(20)); err != nil { // LSN 4
		t.Fatal(err)
	}
	p2 := copyStore(t, p, nil) // crash
	c.Close()
	d, err := Open(p2, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open after the second crash: %v", err)
	}
	defer d.Close()
	if got, err := d.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted binding back after the second crash (the second file's stale LSN 6 chained to the new LSN 4): ip %v, %v", got.IP, err)
	}
	if _, err := d.Binding(testBinding(20).Access, testBinding(20).VLAN, testBinding(20).MAC); err != nil {
		t.Errorf("binding of the new generation after the second crash: %v", err)
	}
}

// rebindThenDelete journals x again with another address (the next LSN),
// then deletes it through a bbolt transaction.
func rebindThenDelete(t *testing.T, s *Store, x Binding) {
	t.Helper()
	x2 := x
	x2.IP = testBinding(99).IP
	if err := s.CommitBinding(x2); err != nil {
		t.Fatal(err)
	}
	if found, err := s.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil || !found {
		t.Fatal(found, err)
	}
}

// TestCheckpointYields: with one P, a goroutine readied while a
// background checkpoint starts (as a channel send readies the control
// plane) runs before the checkpoint has applied its records, not after
// it or at the scheduler's 10 ms preemption. The pauses that let the P
// poll the netpoller are not isolated here: in this test a goroutine
// parked on a pipe was woken within ~0.1 ms with or without them.
func TestCheckpointYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 512
	var applied, during atomic.Bool
	ran := make(chan struct{})
	var once sync.Once
	withMaxPending(t, n, func() {
		once.Do(func() {
			go func() { // readied into the checkpointing goroutine's P
				during.Store(!applied.Load())
				close(ran)
			}()
		})
	}, nil)
	testHookApplied = func() { applied.Store(true) }
	// Reset after the store's Close (cleanups run last first), which
	// waits for the background checkpoint: a deferred reset raced with it.
	t.Cleanup(func() { testHookApplied = nil })
	s, _ := openTest(t, Options{NoSync: true})
	for i := range n {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-ran
	if !during.Load() {
		t.Error("the goroutine readied at the checkpoint's start ran only after its records were applied: the checkpoint held the P")
	}
}
