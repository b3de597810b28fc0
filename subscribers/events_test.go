package subscribers

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func seqs(t *testing.T, s *Store) string {
	t.Helper()
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return fmt.Sprint(out)
}

func checkBounds(t *testing.T, s *Store, oldest, newest uint64) {
	t.Helper()
	o, n, err := s.EventBounds()
	if err != nil || o != oldest || n != newest {
		t.Errorf("EventBounds = %d, %d, %v; want %d, %d", o, n, err, oldest, newest)
	}
}

func TestEventAgeTrimming(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true, EventMaxAge: time.Hour})
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	add := func(at time.Duration) {
		t.Helper()
		if _, err := s.AddEvent(Event{Kind: EventRenewed, Time: t0.Add(at)}); err != nil {
			t.Fatal(err)
		}
	}
	add(0)
	add(10 * time.Minute)
	add(30 * time.Minute)
	add(60 * time.Minute) // t0 is exactly an hour old: kept
	if got := seqs(t, s); got != "[1 2 3 4]" {
		t.Errorf("events = %s, want [1 2 3 4]", got)
	}
	add(65 * time.Minute) // seq 1 is now older than an hour
	if got := seqs(t, s); got != "[2 3 4 5]" {
		t.Errorf("events = %s, want [2 3 4 5]", got)
	}
	checkBounds(t, s, 2, 5)
	// An old-dated event behind a young one stays until those in front
	// of it go (trimming looks only at the front).
	add(-time.Hour) // seq 6, already old
	add(66 * time.Minute)
	if got := seqs(t, s); got != "[2 3 4 5 6 7]" {
		t.Errorf("events = %s, want [2 3 4 5 6 7]", got)
	}
	// Long silence: one append drops everything older, never itself.
	add(5 * time.Hour)
	if got := seqs(t, s); got != "[8]" {
		t.Errorf("events = %s, want [8]", got)
	}
	checkBounds(t, s, 8, 8)
	// An event dated long before the others is still stored (the newest
	// is never trimmed), and trims nothing.
	add(-10 * time.Hour)
	if got := seqs(t, s); got != "[8 9]" {
		t.Errorf("events = %s, want [8 9]", got)
	}

	// A corrupt event at the front is trimmed as old.
	putRaw(t, s, bucketEvents, seqKey(7), []byte{2, 0xff})
	add(5*time.Hour + time.Minute)
	if got := seqs(t, s); got != "[8 9 10]" {
		t.Errorf("events after a corrupt front = %s, want [8 9 10]", got)
	}
}

// TestEventTrimCost: an append looks at the front of the log only: one
// event when nothing is old, plus one per event it trims, however many the
// log holds.
func TestEventTrimCost(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, EventMaxAge: time.Hour})
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	const kept = 20000
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < kept; i += 8 {
				if _, err := s.AddEvent(Event{Kind: EventRenewed, Time: t0.Add(time.Duration(i) * time.Millisecond)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	looked := func(at time.Duration) uint64 {
		t.Helper()
		before := s.trimLooked
		if _, err := s.AddEvent(Event{Kind: EventRenewed, Time: t0.Add(at)}); err != nil {
			t.Fatal(err)
		}
		return s.trimLooked - before
	}
	for i := range 100 {
		if n := looked(kept*time.Millisecond + time.Duration(i)); n != 1 {
			t.Fatalf("append %d to %d young events looked at %d, want 1", i, kept+i, n)
		}
	}
	// Everything but the newest is old: each is looked at once, trimmed,
	// at most maxTrim an append (one transaction trimming millions held
	// every write behind it), the rest by the next appends.
	old, appends := kept+100, 0
	for left := old; left > 0; left -= maxTrim {
		want := min(left, maxTrim) + 1 // and the one it stops at
		if n := looked(3*time.Hour + time.Duration(appends)); n != uint64(want) {
			t.Errorf("append %d trimming %d of %d old events looked at %d, want %d", appends, min(left, maxTrim), left, n, want)
		}
		appends++
	}
	if got, _ := s.Events(0, 0); len(got) != appends {
		t.Errorf("%d events kept, want the %d appended", len(got), appends)
	}
	if n := looked(3*time.Hour + time.Duration(appends)); n != 1 {
		t.Errorf("next append looked at %d, want 1", n)
	}
}

func TestEventBounds(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 3})
	checkBounds(t, s, 1, 0) // new: nothing missed, nothing there
	for i := range 2 {
		if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	checkBounds(t, s, 1, 2)
	for i := range 5 {
		if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	checkBounds(t, s, 5, 7) // retention 3: a reader at seq 2 missed 3 and 4
}

// TestEventTrimBatched: past a retention of 64 the count trim is
// batched: the log grows to retention + slack, then the append that
// crosses it trims back to the retention, index entries with it; in
// between, appends rewrite no page at the log's front.
func TestEventTrimBatched(t *testing.T) {
	numberFromOne(t)
	const retention = 640 // slack 10
	slack := trimSlack(retention)
	if slack != 10 {
		t.Fatalf("trimSlack(%d) = %d, want 10", retention, slack)
	}
	s, _ := openTest(t, Options{NoSync: true, EventRetention: retention})
	add := func(i int) {
		t.Helper()
		if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i), ISP: []string{"alpha", "beta"}[i%2]}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range retention + int(slack) {
		add(i)
	}
	checkBounds(t, s, 1, retention+slack) // at the slack: nothing trimmed yet
	add(0)
	checkBounds(t, s, slack+2, retention+slack+1) // crossed: back to the newest 640
	if evs, err := s.EventsOf("alpha", 0, 0); err != nil || len(evs) != retention/2 || evs[0].Seq != slack+3 {
		t.Errorf("EventsOf(alpha) = %d events from %d, %v; want %d from %d (index trimmed with the log)", len(evs), evs[0].Seq, err, retention/2, slack+3)
	}
	for i := range int(slack) {
		add(i)
		checkBounds(t, s, slack+2, retention+slack+2+uint64(i))
	}
	if trimSlack(1e6) != 256 || trimSlack(63) != 0 {
		t.Errorf("trimSlack: %d at 1e6 (want 256), %d at 63 (want 0)", trimSlack(1e6), trimSlack(63))
	}
}

func TestEventV2Fields(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	want := Event{Time: time.Date(2026, 6, 1, 0, 0, 0, 1, time.UTC), Kind: EventSuppressed, MAC: mac(1), ISP: "alpha",
		IP: netip.MustParseAddr("100.64.0.9"), Reason: "12 refusals were not recorded", Customer: "cust-1", Access: "acc0.100"}
	got, err := s.AddEvent(want)
	want.Seq, want.ISPSeq = 1, 1
	if err != nil || got != want {
		t.Errorf("AddEvent = %+v, %v; want %+v", got, err, want)
	}
	want.ISPSeq = 0 // the whole log's reads do not number by ISP
	if evs, err := s.Events(0, 0); err != nil || len(evs) != 1 || evs[0] != want {
		t.Errorf("Events = %+v, %v; want [%+v]", evs, err, want)
	}
}

func TestBackup(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	for i := range 50 {
		b := testBinding(i)
		b.ClientID, b.Options, b.LeaseTime, b.Customer = []byte{1, byte(i)}, []byte{3, 4, 10, 0, 0, 1}, time.Hour, fmt.Sprint("c", i)
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, Customer: b.Customer}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRegistration(Registration{MAC: mac(i), ISP: "alpha", Source: SourceAPI, Updated: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		in := testIntent(i)
		if _, _, _, err := s.EndBinding(in.Access, in.VLAN, in.MAC, in, Event{Kind: EventReleased, MAC: in.MAC}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup = %d bytes (wrote %d), %v", n, buf.Len(), err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open of the backup: %v", err)
	}
	defer c.Close()
	compareStores(t, s, c)
	// The copy's numbers go on past a jump (TestRestoredCopySkipsEventSeqs).
	e, err := c.AddEvent(Event{Kind: EventBound})
	if last, _ := s.LastEventSeq(); err != nil || e.Seq <= last+minCopyJump {
		t.Errorf("event in the copy: seq %d, %v; want > %d", e.Seq, err, last+minCopyJump)
	}
}

// compareStores checks that b holds what a holds.
func compareStores(t *testing.T, a, b *Store) {
	t.Helper()
	ra, err1 := a.Registrations()
	rb, err2 := b.Registrations()
	if err1 != nil || err2 != nil || fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Errorf("registrations differ: %d (%v) vs %d (%v)", len(ra), err1, len(rb), err2)
	}
	ba, err1 := a.Bindings()
	bb, err2 := b.Bindings()
	if err1 != nil || err2 != nil || len(ba) != len(bb) {
		t.Fatalf("bindings differ: %d (%v) vs %d (%v)", len(ba), err1, len(bb), err2)
	}
	for i := range ba {
		if !bindingEqual(ba[i], bb[i]) {
			t.Errorf("binding %d: %+v vs %+v", i, ba[i], bb[i])
		}
	}
	ia, err1 := a.Intents()
	ib, err2 := b.Intents()
	if err1 != nil || err2 != nil || fmt.Sprint(ia) != fmt.Sprint(ib) {
		t.Errorf("intents differ: %d (%v) vs %d (%v)", len(ia), err1, len(ib), err2)
	}
	ea, err1 := a.Events(0, 0)
	eb, err2 := b.Events(0, 0)
	if err1 != nil || err2 != nil || fmt.Sprint(ea) != fmt.Sprint(eb) {
		t.Errorf("events differ: %d (%v) vs %d (%v)", len(ea), err1, len(eb), err2)
	}
}

// TestBackupWhileWriting: a backup taken during a stream of commits is a
// consistent store: it opens, every value decodes, each binding is with
// its event.
func TestBackupWhileWriting(t *testing.T) {
	s, _ := openTest(t, Options{}) // fsync on: commits take time, backups overlap them
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				b := testBinding(i)
				if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for k := range 5 {
		time.Sleep(20 * time.Millisecond)
		var buf bytes.Buffer
		if _, err := s.Backup(&buf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "copy.db")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path, Options{NoSync: true})
		if err != nil {
			t.Fatalf("Open of backup %d: %v", k, err)
		}
		bs, err := c.Bindings()
		if err != nil {
			t.Fatal(err)
		}
		evs, err := c.Events(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != len(evs) {
			t.Errorf("backup %d: %d bindings, %d events", k, len(bs), len(evs))
		}
		c.Close()
		t.Logf("backup %d: %d bytes, %d bindings", k, buf.Len(), len(bs))
	}
}

// A bound event keeps its lease end; other events have none.
func TestEventLeaseEnd(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	end := time.Date(2026, 12, 2, 3, 4, 5, 600, time.UTC)
	if _, err := s.AddEvent(Event{Kind: EventBound, ISP: "alpha", LeaseEnd: end}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEvent(Event{Kind: EventReleased, ISP: "alpha"}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(0, 0)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events %v %v", evs, err)
	}
	if !evs[0].LeaseEnd.Equal(end) || !evs[1].LeaseEnd.IsZero() {
		t.Errorf("lease ends %v, %v; want %v and none", evs[0].LeaseEnd, evs[1].LeaseEnd, end)
	}
}
