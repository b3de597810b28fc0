package api

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// An ISP's event stream on a box where other ISPs' events keep coming
// (more often than the heartbeat) still gets its heartbeat comment every
// ~Heartbeat (docs/API.md: "A comment line every ~15 s is the
// heartbeat"), which also moves the client's resume position past the
// other ISPs' events. Before, each wake-up restarted the wait and the
// stream stayed silent.
func TestISPStreamHeartbeatOnBusyLog(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits.Heartbeat = 100 * time.Millisecond
	addr := f.serve()
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta"}) // 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, sr := f.stream(ctx, addr, "/v1/isps/beta/events/stream", "beta", "1")
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	got := make(chan sseEvent, 1000)
	go func() {
		for {
			ev, err := sr.next()
			if err != nil {
				close(got)
				return
			}
			got <- ev
		}
	}()
	// Drain the opening position comment.
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("no opening message")
	}
	// Another ISP's events every 20 ms for 1 s (ten heartbeat periods).
	stopSpam := time.Now().Add(time.Second)
	for time.Now().Before(stopSpam) {
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha"})
		time.Sleep(20 * time.Millisecond)
	}
	heartbeats, lastID := 0, ""
	for {
		select {
		case ev, ok := <-got:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.comment {
				heartbeats++
				if ev.id != "" {
					lastID = ev.id // what an EventSource resumes from
				}
			} else {
				t.Errorf("beta's stream got %+v", ev)
			}
			continue
		default:
		}
		break
	}
	if heartbeats == 0 {
		t.Fatalf("beta's stream sent nothing in 1 s (10 heartbeat periods) while alpha's events kept coming: no heartbeat")
	}
	// The heartbeats carry an id (no data): a browser's EventSource,
	// which reads no comments, resumes past alpha's events too, so a
	// reconnect after they were trimmed is no reset.
	if n, err := parseSeq(lastID); err != nil || n < 10 {
		t.Errorf("last heartbeat's id %q; want a resume point past alpha's events (≥ 10 of them)", lastID)
	}
}

// GET …/events and the stream detect trimmed events with missed(after,
// page): page.Oldest is of the same read as page.Events
// (Store.EventsPage). tenants.Events read the bounds and the events in two
// transactions, so events trimmed in between were skipped with missed ==
// false (no `missed`, no `event: reset`): a silent gap.
func TestEventsPageNoSilentGapOnTrim(t *testing.T) {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true, EventRetention: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ten := tenants.New(tenants.Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, st, registry.New(), realNopProxy{}, nil, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: "alpha", MAC: subscribers.MAC{2, 0, 0, 0, 0, byte(i)}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	gaps, reads := 0, 0
	var example string
	for time.Now().Before(deadline) && gaps == 0 {
		oldest, _, err := st.EventBounds()
		if err != nil {
			t.Fatal(err)
		}
		after := oldest - 1 // right at the trimming edge: nothing missed yet
		if after == 0 {
			continue // after 0 means "from the oldest kept"
		}
		p, err := ten.Events(context.Background(), "", after, 100)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if len(p.Events) > 0 && p.Events[0].Seq != after+1 && !missed(after, p) {
			gaps++
			example = fmt.Sprintf("after=%d: first event %d, page oldest %d newest %d, missed=false", after, p.Events[0].Seq, p.Oldest, p.Newest)
		}
	}
	close(stop)
	<-done
	if gaps > 0 {
		t.Fatalf("events page skipped trimmed events without saying so (%d reads): %s", reads, example)
	}
}
