package subscribers

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// crashCopy copies the store's files (database and journal) as they are
// now, as a crash at this instant would leave them (the copy sees the
// page cache, like a process killed now), and opens the copy.
func crashCopy(t *testing.T, path string) (*Store, string) {
	t.Helper()
	dst := copyStore(t, path, nil)
	s, err := Open(dst, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dst
}

// TestJournalReplay: bindings and events committed through the journal,
// not yet checkpointed, are in the store after a crash, with the events'
// sequence numbers as returned; Binding reads them before any
// checkpoint, without a bbolt transaction.
func TestJournalReplay(t *testing.T) {
	numberFromOne(t)
	s, path := openTest(t, Options{})
	const n = 300
	seqs := make([]uint64, n)
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
				seqs[i] = e.Seq
			}
		})
	}
	wg.Wait()
	if got := len(s.pendingBindings()); got != n {
		t.Fatalf("%d bindings pending in the journal, want %d (were they checkpointed?)", got, n)
	}
	txs := s.writeTxs.Load()
	b, err := s.Binding(testBinding(7).Access, testBinding(7).VLAN, testBinding(7).MAC)
	if err != nil || !bindingEqual(b, testBinding(7)) {
		t.Fatalf("Binding of a pending record = %+v, %v", b, err)
	}
	if last, _ := s.LastEventSeq(); last != n {
		t.Errorf("LastEventSeq = %d, want %d", last, n)
	}
	if s.writeTxs.Load() != txs || len(s.pendingBindings()) != n {
		t.Error("Binding or LastEventSeq checkpointed the journal")
	}

	c, _ := crashCopy(t, path)
	for i := range n {
		want := testBinding(i)
		got, err := c.Binding(want.Access, want.VLAN, want.MAC)
		if err != nil || !bindingEqual(got, want) {
			t.Fatalf("binding %d after the crash: %+v, %v", i, got, err)
		}
	}
	if len(c.pendingBindings()) != 0 {
		t.Error("replayed records still pending")
	}
	evs, err := c.Events(0, 0)
	if err != nil || len(evs) != n {
		t.Fatalf("Events after the crash: %d, %v; want %d", len(evs), err, n)
	}
	bySeq := map[uint64]MAC{}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		bySeq[e.Seq] = e.MAC
	}
	for i, seq := range seqs {
		if bySeq[seq] != testBinding(i).MAC {
			t.Errorf("event %d (returned to the writer of binding %d) is of %v", seq, i, bySeq[seq])
		}
	}
	if evs, err := c.EventsOf(testBinding(0).ISP, 0, 0); err != nil || len(evs) != n/2 {
		t.Errorf("EventsOf after the crash: %d, %v; want %d", len(evs), err, n/2)
	}
	// The next event continues the sequence.
	if e, err := c.AddEvent(Event{Kind: EventBound}); err != nil || e.Seq != n+1 {
		t.Errorf("AddEvent after replay: seq %d, %v; want %d", e.Seq, err, n+1)
	}
}

// TestJournalNoResurrection: a binding journaled, then deleted, stays
// deleted after a crash, although its record is still in the journal
// (the delete's transaction checkpointed it and recorded its LSN); and
// records written after that checkpoint, over the old ones, replay.
func TestJournalNoResurrection(t *testing.T) {
	s, path := openTest(t, Options{})
	x, y := testBinding(1), testBinding(2)
	for i := range 50 { // a generation longer than the next one
		if err := s.CommitBinding(testBinding(100 + i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CommitBinding(x); err != nil {
		t.Fatal(err)
	}
	if found, err := s.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil || !found {
		t.Fatalf("DeleteBinding = %v, %v", found, err)
	}
	c, _ := crashCopy(t, path)
	if _, err := c.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted binding after the crash: %v, want ErrNotFound", err)
	}
	// A new generation over the old records.
	if err := s.CommitBinding(y); err != nil {
		t.Fatal(err)
	}
	c, _ = crashCopy(t, path)
	if _, err := c.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted binding after the second crash: %v, want ErrNotFound", err)
	}
	if got, err := c.Binding(y.Access, y.VLAN, y.MAC); err != nil || !bindingEqual(got, y) {
		t.Errorf("binding of the new generation after the crash: %+v, %v", got, err)
	}
	if all, err := c.Bindings(); err != nil || len(all) != 51 {
		t.Errorf("Bindings after the crash: %d, %v; want 51", len(all), err)
	}
}

// TestJournalTornTail: a record cut short or damaged (a write the crash
// interrupted: never acknowledged) ends the replay; those before it
// replay.
func TestJournalTornTail(t *testing.T) {
	s, path := openTest(t, Options{})
	for i := range 10 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	tail := s.jr.tail
	rec := tail / 10
	for _, damage := range []struct {
		name string
		fn   func(j []byte)
	}{
		{"cut short", func(j []byte) { clear(j[tail-rec/2 : tail]) }},
		{"byte flipped", func(j []byte) { j[tail-3] ^= 0x40 }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			c, err := Open(copyStore(t, path, damage.fn), Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			all, err := c.Bindings()
			if err != nil || len(all) != 9 {
				t.Errorf("Bindings = %d, %v; want the 9 before the damaged record", len(all), err)
			}
		})
	}
}

// TestJournalCloseAndRestore: Close checkpoints and empties the journal,
// so a backup taken earlier, put in the file's place, opens as it was;
// a journal of later writes over an older file is refused, not replayed
// with a gap.
func TestJournalCloseAndRestore(t *testing.T) {
	s, path := openTest(t, Options{})
	if err := s.CommitBinding(testBinding(1)); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path) // the bbolt file, binding 1 still pending
	for i := 2; i < 5; i++ {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	jr, err := os.ReadFile(path + ".journal") // LSN 1..4, none checkpointed
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if all, err := s.Bindings(); err != nil || len(all) != 4 {
		t.Errorf("after Close and Open: %d bindings, %v; want 4", len(all), err)
	}
	s.Close()
	// The checkpoint held everything: the journal has no record left.
	b, _ := os.ReadFile(path + ".journal")
	if _, _, ok := decodeRecord(b); ok {
		t.Error("the journal still holds a record after Close")
	}
	// An older file (binding 1 pending) restored over a clean Close's
	// journal: nothing replays.
	os.WriteFile(path, old, 0o600)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if all, err := s.Bindings(); err != nil || len(all) != 0 {
		t.Errorf("restored file: %d bindings, %v; want 0", len(all), err)
	}
	s.Close()

	// The crashed copy's journal (LSN 1..4, none checkpointed) over a
	// file that checkpointed LSN 1..4 and more: records start after it
	// is not a gap (all skipped); over one that checkpointed nothing they
	// replay. A journal starting past the file's LSN + 1 is refused.
	r, n, _ := decodeRecord(jr)
	if r.lsn != 1 {
		t.Fatalf("first record has LSN %d", r.lsn)
	}
	os.WriteFile(path+".journal", jr[n:], 0o600) // starts at LSN 2
	os.WriteFile(path, old, 0o600)               // holds LSN 0
	if s, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open with a journal starting past the file's LSN: %v, want ErrCorrupt", err)
	}
}

// TestJournalFull: records that do not fit in the journal are written
// through a bbolt transaction (a checkpoint) instead; every one is kept.
func TestJournalFull(t *testing.T) {
	numberFromOne(t)
	defer func(m int64) { journalMax = m }(journalMax)
	journalMax = 4096
	s, path := openTest(t, Options{})
	const n = 100
	for i := range n {
		b := testBinding(i)
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP}); err != nil {
			t.Fatal(err)
		}
	}
	if s.jr.tail > journalMax {
		t.Errorf("journal tail %d past its maximum %d", s.jr.tail, journalMax)
	}
	c, _ := crashCopy(t, path)
	if all, err := c.Bindings(); err != nil || len(all) != n {
		t.Errorf("after the crash: %d bindings, %v; want %d", len(all), err, n)
	}
	if evs, err := c.Events(0, 0); err != nil || len(evs) != n || evs[n-1].Seq != n {
		t.Errorf("after the crash: %d events, %v; want %d up to seq %d", len(evs), err, n, n)
	}
}

// TestJournalMixedWriters: journaled and transactional writers at once
// (CommitBindingEvent, AddEvent, DeleteBinding, readers) give one event
// sequence without gaps or duplicates, each writer's Seq its event's.
func TestJournalMixedWriters(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const n = 400
	type got struct {
		seq  uint64
		kind EventKind
		mac  MAC
	}
	res := make(chan got, 2*n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				b := testBinding(i)
				var e Event
				var err error
				if i%3 == 0 {
					e, err = s.AddEvent(Event{Kind: EventReleased, MAC: b.MAC, ISP: b.ISP})
				} else {
					e, err = s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP})
				}
				if err != nil {
					t.Error(err)
					return
				}
				res <- got{e.Seq, e.Kind, b.MAC}
				if i%5 == 0 {
					if _, err := s.DeleteBinding(b.Access, b.VLAN, b.MAC); err != nil {
						t.Error(err)
					}
				}
				if i%7 == 0 {
					if _, _, err := s.EventBounds(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(res)
	want := map[uint64]got{}
	for g := range res {
		if _, dup := want[g.seq]; dup {
			t.Fatalf("seq %d returned twice", g.seq)
		}
		want[g.seq] = g
	}
	evs, err := s.Events(0, 0)
	if err != nil || len(evs) != n {
		t.Fatalf("Events: %d, %v; want %d", len(evs), err, n)
	}
	for _, e := range evs {
		if w := want[e.Seq]; w.kind != e.Kind || w.mac != e.MAC {
			t.Errorf("event %d is %s of %v, its writer got %s of %v", e.Seq, e.Kind, e.MAC, w.kind, w.mac)
		}
	}
	all, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := range n {
		if i%3 != 0 && i%5 != 0 {
			kept++
		}
	}
	if len(all) != kept {
		t.Errorf("%d bindings, want %d", len(all), kept)
	}
}

// TestJournalAppendFails: a failed journal append is an error to its
// writer; the next writes go through bbolt and the record, if any of it
// reached the file, never replays.
func TestJournalAppendFails(t *testing.T) {
	s, path := openTest(t, Options{})
	x, y := testBinding(1), testBinding(2)
	if err := s.CommitBinding(testBinding(0)); err != nil {
		t.Fatal(err)
	}
	f := s.jr.files[s.jr.cur]
	ro, err := os.Open(path + ".journal") // writes to it fail
	if err != nil {
		t.Fatal(err)
	}
	s.jr.files[s.jr.cur] = ro
	if err := s.CommitBinding(x); err == nil {
		t.Fatal("CommitBinding succeeded with the journal failing")
	}
	s.jr.files[s.jr.cur] = f
	ro.Close()
	if !s.jfailed {
		t.Fatal("the failed append did not switch the journal off")
	}
	if err := s.CommitBinding(y); err != nil {
		t.Fatal(err)
	}
	if s.jfailed {
		t.Error("the journal stayed off after a checkpoint")
	}
	// Put x's record into the journal behind the first generation's, as
	// if the failed write had reached the file: its LSN was burnt, so it
	// does not replay.
	jb, err := os.ReadFile(path + ".journal")
	if err != nil {
		t.Fatal(err)
	}
	r1, n1, ok := decodeRecord(jb)
	if !ok || r1.lsn != 1 {
		t.Fatalf("first record: LSN %d, ok %v", r1.lsn, ok)
	}
	xv := jrec{lsn: 2, key: bindingKey(x.Access, x.VLAN, x.MAC), val: encodeBinding(&x)}
	if _, err := f.WriteAt(appendRecord(nil, r1.tag, &xv), int64(n1)); err != nil {
		t.Fatal(err)
	}
	c, _ := crashCopy(t, path)
	if _, err := c.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("binding of the failed write: %v, want ErrNotFound", err)
	}
	if n := c.appliedLSN; n != 2 {
		t.Errorf("checkpointed LSN %d, want 2 (the failed write's LSN burnt)", n)
	}
	if _, err := c.Binding(y.Access, y.VLAN, y.MAC); err != nil {
		t.Errorf("binding written through bbolt: %v", err)
	}
}

// copyStore copies the store's files as they are (a crash now), damage
// applied to the bytes of the journal's first file first, and returns
// the copy's path.
func copyStore(t *testing.T, path string, damage func(j []byte)) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", ".journal", ".journal.1"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if suffix == ".journal" && damage != nil {
			damage(b)
		}
		if err := os.WriteFile(filepath.Join(dir, "s.db"+suffix), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "s.db")
}

// recLen is the length of b's journal record.
func recLen(b Binding) int {
	return len(appendRecord(nil, 0, &jrec{key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b)}))
}

// TestJournalLSNReused: a power loss during a multi-record append keeps
// record LSN 4 and loses LSN 3 (a hole). Open replays up to LSN 2 and
// hands out LSN 3, 4... again; a new LSN 3 that ends where the stale LSN
// 4 starts must not chain to it (the generation tag), or the stale put
// would replay over a later delete. (Found in review.)
func TestJournalLSNReused(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	x := testBinding(1)
	if err := s.CommitBinding(x); err != nil { // LSN 1
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil { // journal-lsn 1, reset
		t.Fatal(err)
	}
	a, b := testBinding(2), testBinding(3)
	x2 := x
	x2.IP = testBinding(99).IP               // a newer put of x, never acknowledged
	for _, bb := range []Binding{a, b, x2} { // LSN 2, 3, 4 (one batch under load)
		if err := s.CommitBinding(bb); err != nil {
			t.Fatal(err)
		}
	}
	la, lb := recLen(a), recLen(b)
	// Power loss: LSN 3's sectors never reached the disk, LSN 4's did.
	p := copyStore(t, path, func(j []byte) { clear(j[la : la+lb]) })
	c, err := Open(p, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.jr.lsn != 2 {
		t.Fatalf("jr.lsn %d", c.jr.lsn)
	}
	if found, err := c.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil || !found {
		t.Fatalf("DeleteBinding = %v, %v", found, err)
	}
	// A later binding whose record is exactly as long as LSN 2 and 3 were.
	y := testBinding(4)
	y.ISP = x.ISP
	for n := 0; recLen(y) != la+lb; n++ {
		y.Circuit = strings.Repeat("c", n)
		if n > 1000 {
			t.Fatal("no length match")
		}
	}
	if err := c.CommitBinding(y); err != nil { // LSN 3 again, at offset 0
		t.Fatal(err)
	}
	p2 := copyStore(t, p, nil) // crash now
	c.Close()
	d, err := Open(p2, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open after second crash: %v", err)
	}
	defer d.Close()
	if got, err := d.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted binding resurrected after the crash: %v ip %v, err %v", got.MAC, got.IP, err)
	}
}

// recLenEv is the length of the journal record of b with e.
func recLenEv(b Binding, e Event) int {
	return len(appendRecord(nil, 0, &jrec{key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b), ev: &Event{Seq: 1, ISP: e.ISP, Time: e.Time}, evVal: encodeEvent(&e)}))
}

// TestJournalLSNReusedEvents: the same hole with events: chained, the
// stale record's event seq collided with a newer one and the store no
// longer opened. The events given out again (Seq, and ISPSeq: the lost
// record's event and the stale one were isp-1's) were never returned:
// after the second crash each ISP's numbers are gap-free and the events
// returned since read back with theirs.
func TestJournalLSNReusedEvents(t *testing.T) {
	numberFromOne(t)
	s, path := openTest(t, Options{NoSync: true})
	ts := testBinding(0).Updated
	ev := func(b Binding) Event { return Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, Time: ts} }
	a, b, x := testBinding(2), testBinding(3), testBinding(1)
	var returned []Event                    // those the crash keeps: a's, then the new ones
	for k, bb := range []Binding{a, b, x} { // LSN 1, 2, 3; seq 1, 2, 3
		e, err := s.CommitBindingEvent(bb, ev(bb))
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			returned = append(returned, e)
		}
	}
	la, lb := recLenEv(a, ev(a)), recLenEv(b, ev(b))
	p := copyStore(t, path, func(j []byte) { clear(j[la : la+lb]) })
	c, err := Open(p, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.AddEvent(Event{Kind: EventReleased, ISP: b.ISP}) // seq 2, isp-1's 1, through bbolt
	if err != nil {
		t.Fatal(err)
	}
	returned = append(returned, e)
	y := testBinding(4)
	y.ISP = x.ISP
	for n := 0; recLenEv(y, ev(y)) != la+lb; n++ {
		y.Circuit = strings.Repeat("c", n)
	}
	if e, err = c.CommitBindingEvent(y, ev(y)); err != nil { // LSN 2 again, seq 3, isp-1's 2
		t.Fatal(err)
	}
	returned = append(returned, e)
	p2 := copyStore(t, p, nil)
	c.Close()
	d, err := Open(p2, Options{NoSync: true})
	if err != nil {
		t.Fatalf("open after the second crash: %v", err)
	}
	checkISPNumbering(t, "after the second crash", d, returned)
	d.Close()
}

// TestJournalCloseNotEmptied: a Close whose checkpoint committed but
// whose emptying of the journal failed lost nothing: its error is a
// *JournalKeptError with nothing to replay, and the next Open skips the
// records the file holds (a binding deleted after its record was
// journaled stays deleted).
func TestJournalCloseNotEmptied(t *testing.T) {
	s, path := openTest(t, Options{})
	x := testBinding(1)
	for i := range 5 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteBinding(x.Access, x.VLAN, x.MAC); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBinding(testBinding(5)); err != nil {
		t.Fatal(err)
	}
	// Binding 5's record, the first of the journal's generation, is
	// left at the start of the file.
	ro, err := os.Open(path + ".journal") // writes to it fail
	if err != nil {
		t.Fatal(err)
	}
	s.jr.files[0].Close()
	s.jr.files[0] = ro
	err = s.Close()
	var kept *JournalKeptError
	if !errors.As(err, &kept) || kept.Replay || !strings.Contains(err.Error(), "nothing is lost") {
		t.Fatalf("Close with the journal read-only: %v, want a JournalKeptError with nothing to replay", err)
	}
	if b, _ := os.ReadFile(path + ".journal"); len(b) < jrecHeader || !bytes.Contains(b[:recLen(testBinding(5))], bindingKey(testBinding(5).Access, testBinding(5).VLAN, testBinding(5).MAC)) {
		t.Fatal("the journal's first record is not binding 5's: the test proves nothing")
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if all, err := s.Bindings(); err != nil || len(all) != 5 {
		t.Errorf("after the Open: %d bindings, %v; want 5", len(all), err)
	}
	if _, err := s.Binding(x.Access, x.VLAN, x.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted binding after the Open: %v, want ErrNotFound", err)
	}
}
