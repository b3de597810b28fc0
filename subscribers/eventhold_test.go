package subscribers

import (
	"fmt"
	"testing"
)

// addN appends n events of isp.
func addN(t *testing.T, s *Store, isp string, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.AddEvent(Event{Kind: EventBound, ISP: isp, Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEventHoldForWebhook: alpha's webhook receiver acknowledged 3 of its
// 10 events when beta's burst (an import) writes 5× the retention. With
// alpha held (HoldEventsFor), alpha's unacknowledged events stay in the
// log, and it grows past the retention by what they hold (HeldEvents),
// never past holdFactor × the retention; once alpha's receiver catches
// up, the log is trimmed back. Without a hold (before), the burst pushed
// alpha's undelivered events out.
func TestEventHoldForWebhook(t *testing.T) {
	numberFromOne(t)
	const retention = 100
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprint("hold=", hold), func(t *testing.T) {
			s, _ := openTest(t, Options{NoSync: true, EventRetention: retention})
			if hold {
				s.HoldEventsFor([]string{"alpha", "gamma"})
			}
			addN(t, s, "alpha", 10)
			if err := s.SetWebhookCursor("alpha", 3); err != nil {
				t.Fatal(err)
			}
			addN(t, s, "beta", 2*retention)
			evs, oldest, _, err := s.WebhookEvents("alpha", 3, 100)
			if err != nil {
				t.Fatal(err)
			}
			if !hold {
				if len(evs) != 0 || oldest <= 4 {
					t.Fatalf("without a hold: %d of alpha's events left (oldest %d): the burst should have pushed them out", len(evs), oldest)
				}
				return
			}
			if len(evs) != 7 || evs[0].ISPSeq != 4 || oldest > 4 {
				t.Fatalf("held: alpha's events after its cursor: %d, oldest %d; want 4..10 kept", len(evs), oldest)
			}
			o, n, err := s.EventBounds()
			if err != nil {
				t.Fatal(err)
			}
			if kept := n - o + 1; kept <= retention+trimSlack(retention) || s.HeldEvents() == 0 {
				t.Errorf("log of %d events, %d held: want more than the retention, some held", kept, s.HeldEvents())
			}
			// Far past the bound: alpha's receiver down too long.
			addN(t, s, "beta", 2*holdFactor*retention)
			o, n, _ = s.EventBounds()
			if kept := n - o + 1; kept > holdFactor*retention+trimSlack(retention) {
				t.Errorf("log of %d events: over the bound of %d", kept, holdFactor*retention)
			}
			if evs, _, _, _ := s.WebhookEvents("alpha", 3, 100); len(evs) != 0 {
				t.Errorf("%d of alpha's events kept past the bound", len(evs))
			}
			// Caught up: trimmed back to the retention.
			if err := s.SetWebhookCursor("alpha", 10); err != nil {
				t.Fatal(err)
			}
			// Nothing held any more, before any trim (the gauge stayed up
			// until the next append: a trial).
			if h := s.HeldEvents(); h != 0 {
				t.Errorf("held %d once alpha caught up, before any append; want 0", h)
			}
			addN(t, s, "beta", 1)
			o, n, _ = s.EventBounds()
			if kept := n - o + 1; kept > retention+trimSlack(retention) || s.HeldEvents() != 0 {
				t.Errorf("after alpha caught up: log of %d events, %d held; want the retention", kept, s.HeldEvents())
			}
		})
	}
}

// TestEventHoldSurvivesReplay: the crash of TestEventHoldForWebhook's
// store, with a binding event still in the journal. Its replay at Open,
// before the webhook manager could say which ISPs hold the log, trimmed
// the held events by count (a review: alpha kept 0 of its 7). The replay
// trims nothing now; the first append after Open, with the hold in force
// again, trims as the hold allows.
func TestEventHoldSurvivesReplay(t *testing.T) {
	numberFromOne(t)
	const retention = 100
	s, path := openTest(t, Options{NoSync: true, EventRetention: retention})
	s.HoldEventsFor([]string{"alpha"})
	addN(t, s, "alpha", 10)
	if err := s.SetWebhookCursor("alpha", 3); err != nil {
		t.Fatal(err)
	}
	addN(t, s, "beta", 2*retention)
	b := testBinding(1)
	if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: "beta", IP: b.IP}); err != nil {
		t.Fatal(err)
	}
	if len(s.pendingBindings()) == 0 {
		t.Fatal("the binding event is not pending in the journal")
	}
	dst := copyStore(t, path, nil) // the crash
	c, err := Open(dst, Options{NoSync: true, EventRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.HoldEventsFor([]string{"alpha"}) // the webhook manager, after Open
	addN(t, c, "beta", 1)
	if evs, _, _, err := c.WebhookEvents("alpha", 3, 100); err != nil || len(evs) != 7 {
		t.Errorf("alpha's unacknowledged events after the crash: %d, %v; want 7", len(evs), err)
	}
}

// TestEventHoldTrimsBatched: past its bound, a held log is trimmed a
// slack's worth at a time, as the count trim is, not one event at every
// append (which rewrote the log's first pages at every binding commit: a
// review measured 100 trims in 100 appends).
func TestEventHoldTrimsBatched(t *testing.T) {
	const retention = 640 // slack 10
	s, _ := openTest(t, Options{NoSync: true, EventRetention: retention})
	s.HoldEventsFor([]string{"alpha"})
	addN(t, s, "alpha", holdFactor*retention+100) // alpha's receiver acknowledged nothing
	trims := 0
	o, _, _ := s.EventBounds()
	for range 100 {
		addN(t, s, "alpha", 1)
		if no, _, _ := s.EventBounds(); no != o {
			trims++
			o = no
		}
	}
	if trims > 100/int(trimSlack(retention))+1 || trims == 0 {
		t.Errorf("%d trims in 100 appends past the bound, want about %d", trims, 100/trimSlack(retention))
	}
}
