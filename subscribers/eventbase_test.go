package subscribers

import (
	"context"
	"errors"
	"testing"
	"time"
)

// numberFromOne makes the stores the test creates number their events
// from 1, as every store did before a new one took its base from the
// clock (eventbase.go): for the tests that name event numbers.
func numberFromOne(t testing.TB) {
	t.Helper()
	old := storeClock
	storeClock = func() time.Time { return time.Time{} }
	t.Cleanup(func() { storeClock = old })
}

// clockAt makes the stores the test creates take their base from at.
func clockAt(t testing.TB, at time.Time) {
	t.Helper()
	old := storeClock
	storeClock = func() time.Time { return at }
	t.Cleanup(func() { storeClock = old })
}

// A new store numbers its events, and every ISP's, after the clock at its
// creation in microseconds: the first is base+1, and what every reader
// reads says so (bounds, newest). Reopened, later, it keeps that
// numbering. Before, a new store numbered from 1.
func TestNewStoreNumbersFromClock(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC)
	clockAt(t, at)
	s, _ := openTest(t, Options{NoSync: true})
	base := uint64(at.UnixMicro())
	if s.EventBase() != base || !s.CreatedByOpen() {
		t.Fatalf("EventBase %d, created %v; want %d, true", s.EventBase(), s.CreatedByOpen(), base)
	}
	if n, _ := s.LastEventSeq(); n != base {
		t.Errorf("LastEventSeq of the new store %d, want the base %d", n, base)
	}
	if n, _ := s.LastEventSeqOf("alpha"); n != base {
		t.Errorf("LastEventSeqOf(alpha) of the new store %d, want the base %d", n, base)
	}
	if o, n, _ := s.EventBounds(); o != base+1 || n != base {
		t.Errorf("EventBounds of the new store %d, %d; want %d, %d", o, n, base+1, base)
	}
	e, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(1), ISP: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != base+1 || e.ISPSeq != base+1 {
		t.Errorf("first event: seq %d, isp seq %d; want %d for both", e.Seq, e.ISPSeq, base+1)
	}
	e, _ = s.AddEvent(Event{Kind: EventBound, MAC: mac(2), ISP: "beta"})
	if e.Seq != base+2 || e.ISPSeq != base+1 {
		t.Errorf("beta's first event: seq %d, isp seq %d; want %d, %d", e.Seq, e.ISPSeq, base+2, base+1)
	}
	// Reopened with the clock far ahead: nothing moves.
	clockAt(t, at.Add(1000*time.Hour))
	s = reopen(t, s, Options{NoSync: true})
	if s.EventBase() != base || s.CreatedByOpen() {
		t.Errorf("reopened: EventBase %d, created %v; want %d, false", s.EventBase(), s.CreatedByOpen(), base)
	}
	if e, _ := s.AddEvent(Event{Kind: EventBound, MAC: mac(3), ISP: "alpha"}); e.Seq != base+3 || e.ISPSeq != base+2 {
		t.Errorf("after a reopen: seq %d, isp seq %d; want %d, %d", e.Seq, e.ISPSeq, base+3, base+2)
	}
}

// A store an older ispmux created (numbered from 1, no base) keeps its
// numbering when this one opens it.
func TestExistingStoreKeepsNumbering(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	addEvents(t, s, 3, "alpha")
	storeClock = time.Now
	s = reopen(t, s, Options{NoSync: true})
	if e, _ := s.AddEvent(Event{Kind: EventBound, MAC: mac(9), ISP: "alpha"}); e.Seq != 4 || e.ISPSeq != 4 || s.EventBase() != 0 {
		t.Errorf("a store numbered from 1, reopened: seq %d, isp seq %d, base %d; want 4, 4, 0", e.Seq, e.ISPSeq, s.EventBase())
	}
}

// A box rebuilt with a new store: the new store's numbers, the log's and
// each ISP's, are above every number the old one gave out, so that a
// webhook receiver deduping by id and an API reader resuming after its
// number see its events. Two stores created one after the other on the
// real clock, the first having given out 2000 numbers.
func TestNewStoresNumberIncreasing(t *testing.T) {
	a, _ := openTest(t, Options{NoSync: true})
	var last Event
	for i := range 2000 {
		var err error
		if last, err = a.AddEvent(Event{Kind: EventBound, MAC: mac(i), ISP: "alpha"}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := openTest(t, Options{NoSync: true})
	first, err := b.AddEvent(Event{Kind: EventBound, MAC: mac(1), ISP: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq <= last.Seq || first.ISPSeq <= last.ISPSeq {
		t.Errorf("the later store's first event: seq %d, isp seq %d; the earlier's last: %d, %d (bases %d, %d)",
			first.Seq, first.ISPSeq, last.Seq, last.ISPSeq, a.EventBase(), b.EventBase())
	}
	if first.Seq >= 1<<53 {
		t.Errorf("seq %d is past 2^53: not exact in a JavaScript receiver", first.Seq)
	}
}

// newStoreBase: microseconds, 0 before 1970 (numbered from 1), capped at
// 2^52 (exact in JSON numbers with room above).
func TestNewStoreBase(t *testing.T) {
	for _, c := range []struct {
		at   time.Time
		want uint64
	}{
		{time.Time{}, 0},
		{time.Unix(0, 0), 0},
		{time.Unix(-5, 0), 0},
		{time.Unix(1, 500), 1_000_000},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 1767225600_000_000},
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), maxEventBase},
	} {
		if got := newStoreBase(c.at); got != c.want {
			t.Errorf("newStoreBase(%v) = %d, want %d", c.at, got, c.want)
		}
	}
	if maxEventBase >= 1<<53 {
		t.Error("maxEventBase is not below 2^53")
	}
}

// The base is no events: the log keeps the same events by count with a
// base as from 1 (a trim counting the base's numbers as events trimmed
// everything), SeqBefore counts events, and WaitEvents after 0 waits for
// an event.
func TestEventBaseNotCounted(t *testing.T) {
	kept := func(t *testing.T) ([]uint64, *Store) {
		s, _ := openTest(t, Options{NoSync: true, EventRetention: 100})
		addEvents(t, s, 300, "alpha")
		evs, err := s.Events(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq-s.EventBase())
		}
		return seqs, s
	}
	var from1 []uint64
	t.Run("from1", func(t *testing.T) {
		numberFromOne(t)
		from1, _ = kept(t)
	})
	based, s := kept(t)
	base := s.EventBase()
	if base == 0 || len(based) == 0 || len(based) != len(from1) || based[0] != from1[0] {
		t.Fatalf("with base %d the log keeps %d events from base+%v; numbered from 1, %d from %v", base, len(based), based[:min(1, len(based))], len(from1), from1[:min(1, len(from1))])
	}
	newest, _ := s.LastEventSeq()
	if got := s.SeqBefore(newest, 10); got != newest-10 {
		t.Errorf("SeqBefore(newest, 10) = %d, want %d", got, newest-10)
	}
	if got := s.SeqBefore(newest, 300); got != 0 {
		t.Errorf("SeqBefore(newest, 300) = %d, want 0 (300 events in all)", got)
	}
	if got := s.SeqBefore(newest, 299); got != base+1 {
		t.Errorf("SeqBefore(newest, 299) = %d, want base+1 (%d)", got, base+1)
	}

	e, _ := openTest(t, Options{NoSync: true})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.WaitEvents(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitEvents(0) on a new store with no event: %v, want to wait", err)
	}
}

// Readers of a new store: every one after a number below the base reads
// every event, and the log's oldest is base+1, not folded back to 1 as a
// restored copy's jump is: a reader after 0 (a new one: "from the oldest
// kept") missed nothing, and one after another number below the base (it
// read the store before a rebuild) is told it missed events (after+1 <
// oldest: api's missed, the stream's reset). For the operator's log and
// an ISP's numbering both.
func TestEventBaseBounds(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	base := s.EventBase()
	addEvents(t, s, 5, "alpha")
	for _, isp := range []string{"", "alpha"} {
		for _, after := range []uint64{0, 7, base - 1} {
			evs, oldest, newest, err := s.EventsPage(isp, after, 0)
			if err != nil || len(evs) != 5 || evs[0].Seq != base+1 || oldest != base+1 || newest != base+5 {
				t.Errorf("EventsPage(%q, %d): %d events, oldest %d, newest %d, %v; want 5 from %d, oldest %d, newest %d",
					isp, after, len(evs), oldest, newest, err, base+1, base+1, base+5)
			}
		}
		evs, oldest, _, err := s.EventsPage(isp, base+2, 0)
		if err != nil || len(evs) != 3 || evs[0].Seq != base+3 || oldest != base+1 {
			t.Errorf("EventsPage(%q, base+2): %d events, oldest %d, %v", isp, len(evs), oldest, err)
		}
	}
}

// A copy of a store with a base: its numbers jump past the copy's newest
// as any copy's, and once the events before the jump are trimmed a
// reader at the copy's newest is not told it missed any (the jump folds
// back to it), while one below the base still is (the base does not
// fold).
func TestRestoredCopyOfBasedStore(t *testing.T) {
	opts := Options{NoSync: true, EventRetention: 10}
	s, _ := openTest(t, opts)
	base := s.EventBase()
	addEvents(t, s, 5, "alpha")
	c, _ := restoreCopy(t, s, opts)
	jump := c.OpenedFromCopy()
	if c.EventBase() != base || jump == 0 {
		t.Fatalf("copy: base %d, jump %d; want %d and a jump", c.EventBase(), jump, base)
	}
	seqs := addEvents(t, c, 10, "alpha") // the copy's 5 trimmed: retention 10
	if seqs[0] != base+5+jump+1 {
		t.Errorf("the copy's first new event %d, want %d", seqs[0], base+5+jump+1)
	}
	evs, oldest, _, err := c.EventsPage("", base+5, 0)
	if err != nil || len(evs) != 10 || evs[0].Seq != seqs[0] || oldest != base+6 {
		t.Errorf("the copy's log after the copy's newest: %d events from %v, oldest %d, %v; want the 10 new, oldest %d (the jump folded)",
			len(evs), evs[:min(1, len(evs))], oldest, err, base+6)
	}
	if _, oldest, _, _ := c.EventsPage("", 3, 0); oldest != base+6 {
		t.Errorf("a reader below the base: oldest %d, want %d (past its number: told it missed events)", oldest, base+6)
	}
}

// The lag of a cursor at 0 (nothing acknowledged) on a store numbered from
// a base counts the ISP's events, not the numbers up to the base, which
// were never given out: it read the base (~1.8e15) as events trimmed
// before delivery. Fails without the base in countEventsOf.
func TestWebhookLagFromBase(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)
	clockAt(t, at)
	s, _ := openTest(t, Options{NoSync: true})
	base := s.EventBase()
	if held, trimmed, err := s.WebhookLag("alpha", 0, 0); err != nil || held != 0 || trimmed != 0 {
		t.Errorf("new store: WebhookLag(alpha, 0) = %d held, %d trimmed, %v; want 0, 0", held, trimmed, err)
	}
	for i := range 3 {
		if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i + 1), ISP: "alpha"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, after := range []uint64{0, base} {
		if held, trimmed, err := s.WebhookLag("alpha", after, 0); err != nil || held != 3 || trimmed != 0 {
			t.Errorf("WebhookLag(alpha, %d) = %d held, %d trimmed, %v; want 3, 0", after, held, trimmed, err)
		}
	}
	if held, trimmed, _ := s.WebhookLag("alpha", base+2, 0); held != 1 || trimmed != 0 {
		t.Errorf("WebhookLag(alpha, base+2) = %d held, %d trimmed; want 1, 0", held, trimmed)
	}
}
