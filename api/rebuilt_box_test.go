package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/subscribers"
)

// A box rebuilt with a new store: an API reader whose cursor is the old
// store's (its saved `next`, of the operator's log or of an ISP's) gets
// every event of the new store and is told it missed events (those the
// old box had after its cursor are gone); a new reader (after 0) gets
// every event and missed nothing; one whose cursor is the new store's
// resumes as usual; the stream resumed at the old number says reset and
// goes on from the new store's first event. Before, the new store
// numbered from 1 again: the old cursor was past its newest (missed, no
// events, next its newest), and the events the new box had already
// written were skipped.
func TestEventsAfterRebuiltBox(t *testing.T) {
	old, err := subscribers.Open(filepath.Join(t.TempDir(), "old.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var lastOp, lastAlpha uint64
	for i := range 50 {
		e, err := old.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: []string{"alpha", "beta"}[i%2], MAC: subscribers.MAC{2, 0, 0, 0, 0, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		lastOp = e.Seq
		if e.ISP == "alpha" {
			lastAlpha = e.ISPSeq
		}
	}
	old.Close()

	f, _, st := newRealFixture(t) // the rebuilt box's store, created after
	var fresh []subscribers.Event
	for i := range 6 {
		e, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: []string{"alpha", "beta"}[i%2], MAC: subscribers.MAC{2, 0, 0, 0, 1, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, e)
	}
	if fresh[0].Seq <= lastOp || fresh[0].ISPSeq <= lastAlpha {
		t.Errorf("the new store's first event %d (alpha's %d) is not past the old store's last, %d (alpha's %d)", fresh[0].Seq, fresh[0].ISPSeq, lastOp, lastAlpha)
	}
	list := func(who, path string) EventList {
		t.Helper()
		w := f.do("GET", path, who, "")
		var el EventList
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &el) != nil {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return el
	}
	for _, c := range []struct {
		who, path string
		oldCursor uint64
		n         int    // the new store's events the reader sees
		first     uint64 // the seq of the first, as the reader numbers it
	}{
		{"operator", "/v1/events", lastOp, 6, fresh[0].Seq},
		{"alpha", "/v1/isps/alpha/events", lastAlpha, 3, fresh[0].ISPSeq},
	} {
		for _, r := range []struct {
			after  uint64
			missed bool
		}{{c.oldCursor, true}, {0, false}} {
			el := list(c.who, c.path+"?after="+strconv.FormatUint(r.after, 10))
			if len(el.Items) != c.n || el.Items[0].Seq != c.first || el.Missed != r.missed || el.Next != strconv.FormatUint(el.Newest, 10) {
				t.Errorf("%s after %d: %d events from %v, missed %v, next %s (newest %d); want %d from %d, missed %v, next the newest",
					c.path, r.after, len(el.Items), el.Items, el.Missed, el.Next, el.Newest, c.n, c.first, r.missed)
			}
		}
		el := list(c.who, c.path+"?after="+strconv.FormatUint(c.first, 10))
		if len(el.Items) != c.n-1 || el.Missed {
			t.Errorf("%s after the new store's first: %d events, missed %v; want %d, not missed", c.path, len(el.Items), el.Missed, c.n-1)
		}
	}
	// The stream resumed at the old store's number: a reset, then every
	// event of the new store.
	w := f.do("GET", "/v1/events/stream", "operator", "", "Last-Event-ID", strconv.FormatUint(lastOp, 10)) // runs 100 ms
	body := w.Body.String()
	reset := fmt.Sprintf("id: %d\nevent: reset\n", st.EventBase())
	if w.Code != 200 || !strings.Contains(body, reset) || !strings.Contains(body, fmt.Sprintf("id: %d\nevent: bound\n", fresh[0].Seq)) ||
		!strings.Contains(body, fmt.Sprintf("id: %d\nevent: bound\n", fresh[5].Seq)) {
		t.Errorf("stream resumed at the old store's %d: %d\n%s\nwant a reset to %d, then events %d..%d", lastOp, w.Code, body, st.EventBase(), fresh[0].Seq, fresh[5].Seq)
	}
}
