package subscribers

import (
	"errors"
	"testing"
)

func TestWebhookCursor(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	if seq, ok, err := s.WebhookCursor("beta"); err != nil || ok || seq != 0 {
		t.Fatalf("new store: %d %v %v", seq, ok, err)
	}
	if err := s.SetWebhookCursor("beta", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWebhookCursor("beta", 5); err != nil { // backwards: ignored
		t.Fatal(err)
	}
	if err := s.SetWebhookCursor("alpha", 0); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if err := s.SetWebhookCursor(bad, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetWebhookCursor(%q): %v", bad, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if seq, ok, err := s.WebhookCursor("beta"); err != nil || !ok || seq != 7 {
		t.Errorf("beta after reopen: %d %v %v, want 7", seq, ok, err)
	}
	if seq, ok, err := s.WebhookCursor("alpha"); err != nil || !ok || seq != 0 {
		t.Errorf("alpha after reopen: %d %v %v, want 0 (stored)", seq, ok, err)
	}
	if _, _, err := s.WebhookCursor("gamma"); err != nil {
		t.Error(err)
	}
}

func TestWebhookEvents(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 5})
	// seq 1..8: beta on odd, alpha on even; retention 5 keeps 4..8.
	for i := 1; i <= 8; i++ {
		isp := "alpha"
		if i%2 == 1 {
			isp = "beta"
		}
		if _, err := s.AddEvent(Event{Kind: EventBound, ISP: isp, MAC: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// beta's Seq 1, 3, 5, 7 are its ISPSeq 1..4: it keeps 3 and 4.
	evs, oldest, newest, err := s.WebhookEvents("beta", 0, 0)
	if err != nil || oldest != 3 || newest != 4 || len(evs) != 2 || evs[0].Seq != 5 || evs[1].Seq != 7 || evs[0].ISPSeq != 3 || evs[1].ISPSeq != 4 {
		t.Fatalf("WebhookEvents(beta, 0) = %+v %d %d %v", evs, oldest, newest, err)
	}
	evs, _, _, err = s.WebhookEvents("beta", 3, 1)
	if err != nil || len(evs) != 1 || evs[0].Seq != 7 {
		t.Errorf("WebhookEvents(beta, 3, 1) = %+v %v", evs, err)
	}
	evs, oldest, newest, err = s.WebhookEvents("beta", 4, 0)
	if err != nil || len(evs) != 0 || oldest != 3 || newest != 4 {
		t.Errorf("WebhookEvents(beta, 4) = %+v %d %d %v", evs, oldest, newest, err)
	}
	if _, _, _, err := s.WebhookEvents("", 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty ISP: %v", err)
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  int
	}{{0, 0, 2}, {3, 0, 1}, {0, 1, 1}, {4, 0, 0}, {^uint64(0), 0, 0}} {
		if n, err := s.CountEventsOf("beta", c.after, c.limit); err != nil || n != c.want {
			t.Errorf("CountEventsOf(beta, %d, %d) = %d %v, want %d", c.after, c.limit, n, err, c.want)
		}
	}
}
