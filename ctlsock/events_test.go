package ctlsock

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// controlRig serves the control socket of an appliance that has only an
// event store holding n events (Seq base+1..base+n) with the given
// retention, and returns the store's base (subscribers.Store.EventBase).
func controlRig(t *testing.T, n, retention int) (string, uint64) {
	t.Helper()
	dir := t.TempDir()
	store, err := subscribers.Open(filepath.Join(dir, StoreName), subscribers.Options{NoSync: true, EventRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for i := range n {
		if _, err := store.AddEvent(subscribers.Event{Kind: subscribers.EventBound, MAC: subscribers.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "ispmux.sock")
	srv, err := Serve(sock, &Server{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return sock, store.EventBase()
}

func seqs(evs []EventStatus) (first, last uint64, n int) {
	if len(evs) == 0 {
		return 0, 0, 0
	}
	return evs[0].Seq, evs[len(evs)-1].Seq, len(evs)
}

func TestEventsPaging(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 1200 events, a retention of 1100: the log trims back to the newest
	// 1100 each time it runs 17 past them (retention/64, see
	// subscribers.Options.EventRetention), last at Seq 1190: Seq 91..1200
	// (after the store's base, b).
	sock, b := controlRig(t, 1200, 1100)
	for _, tt := range []struct {
		name                 string
		fetch                func() (*EventPage, error)
		first, last, n       uint64
		wantOldest, wantNewe uint64
	}{
		{"newest 100", func() (*EventPage, error) { return FetchNewestEvents(ctx, sock, 100) }, b + 1101, b + 1200, 100, b + 91, b + 1200},
		{"newest beyond the log", func() (*EventPage, error) { return FetchNewestEvents(ctx, sock, 5000) }, b + 91, b + 1200, 1110, b + 91, b + 1200},
		{"after, default limit 1000", func() (*EventPage, error) { return FetchEventPage(ctx, sock, 0, 0) }, b + 91, b + 1090, 1000, b + 91, b + 1200},
		{"after 1150", func() (*EventPage, error) { return FetchEventPage(ctx, sock, b+1150, 0) }, b + 1151, b + 1200, 50, b + 91, b + 1200},
		{"after 500 limit 20", func() (*EventPage, error) { return FetchEventPage(ctx, sock, b+500, 20) }, b + 501, b + 520, 20, b + 91, b + 1200},
	} {
		p, err := tt.fetch()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		first, last, n := seqs(p.Events)
		if first != tt.first || last != tt.last || uint64(n) != tt.n || p.Oldest != tt.wantOldest || p.Newest != tt.wantNewe {
			t.Errorf("%s: seq %d..%d (%d events), log %d..%d; want %d..%d (%d), log %d..%d",
				tt.name, first, last, n, p.Oldest, p.Newest, tt.first, tt.last, tt.n, tt.wantOldest, tt.wantNewe)
		}
		for i := 1; i < len(p.Events); i++ {
			if p.Events[i].Seq != p.Events[i-1].Seq+1 {
				t.Fatalf("%s: not ascending at %d: %d after %d", tt.name, i, p.Events[i].Seq, p.Events[i-1].Seq)
			}
		}
	}
	// FetchEvents keeps its meaning: the events after a Seq.
	evs, err := FetchEvents(ctx, sock, b+1190)
	if first, last, n := seqs(evs); err != nil || first != b+1191 || last != b+1200 || n != 10 {
		t.Errorf("FetchEvents(1190): %d..%d (%d), %v", first, last, n, err)
	}
	if _, err := FetchNewestEvents(ctx, sock, 0); err == nil || !strings.Contains(err.Error(), "last must be 1..10000") {
		t.Errorf("last=0: %v, want a 400 naming the range", err)
	}
}

func TestEventsEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock, b := controlRig(t, 0, 0)
	p, err := FetchNewestEvents(ctx, sock, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Newest is the last number given out: a new store's base.
	if p.Events == nil || len(p.Events) != 0 || p.Oldest != 0 || p.Newest != b {
		t.Errorf("empty log: %+v", p)
	}
}
