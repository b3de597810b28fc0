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
			addN(t, s, "beta", 1)
			o, n, _ = s.EventBounds()
			if kept := n - o + 1; kept > retention+trimSlack(retention) || s.HeldEvents() != 0 {
				t.Errorf("after alpha caught up: log of %d events, %d held; want the retention", kept, s.HeldEvents())
			}
		})
	}
}
