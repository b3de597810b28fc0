package webhooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// A store restored from a backup copy skips 2^32+ event numbers. A
// receiver that had every event up to the copy's newest, N, and then gets
// every event the restored store wrote, lost nothing: the numbers after N
// up to the jump were never events. Once the log's events from before
// the jump are trimmed (count or age), it was told that events
// N+1..N+jump (four billion) were lost.
func TestRestoredCopyNoFalseEventsLost(t *testing.T) {
	opts := subscribers.Options{NoSync: true, EventRetention: 5}
	s := openStore(t, "", opts)
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	cfg := &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}
	r := start(t, cfg, s)
	for i := range 5 {
		addEvent(t, s, "beta", subscribers.EventBound, i)
	}
	rc.waitAcked(5, 5*time.Second)
	waitCursor(t, r.m, "beta", s.EventBase()+5)
	r.stop()

	c := restoredCopy(t, s, opts)
	var fresh []subscribers.Event
	for i := range 5 {
		fresh = append(fresh, addEvent(t, c, "beta", subscribers.EventBound, 10+i))
	}
	start(t, cfg, c)
	rc.waitAcked(10, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	got := rc.acked()
	for _, id := range got {
		if strings.HasPrefix(id, "lost-") {
			t.Errorf("receiver told %s: it had every event up to the copy's newest (5) and gets all of %v", id, ids(fresh...))
		}
	}
}

// A webhook's lag across a restored copy's jump counts the events, not the
// numbers: with the receiver at the store's start (its base), the copy's 3 events and 40 after the
// restore (the log keeps 20 of them: retention 5, hold 4x), the lag is 43.
// Counting the numbers before the log's oldest, the jump's 2^32 among
// them, it read a million (the cap: a review).
func TestRestoredCopyLag(t *testing.T) {
	opts := subscribers.Options{NoSync: true, EventRetention: 5}
	s := openStore(t, "", opts)
	for i := range 3 {
		addEvent(t, s, "beta", subscribers.EventBound, i)
	}
	c := restoredCopy(t, s, opts)
	if err := c.SetWebhookCursor("beta", c.EventBase()); err != nil {
		t.Fatal(err)
	}
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", "http://127.0.0.1:9/", writeSecret(t, specSecret))}}, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		addEvent(t, c, "beta", subscribers.EventBound, 10+i)
	}
	if st, _ := m.StatusOf("beta"); st.Lag != 43 {
		t.Errorf("lag %d, want 43 (3 events of the copy, 40 after it)", st.Lag)
	}
}

// restoredCopy opens, with opts, a backup copy of s (ctl backup's), as a
// store restored from it.
func restoredCopy(t *testing.T, s *subscribers.Store, opts subscribers.Options) *subscribers.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "restored.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := openStore(t, path, opts)
	if c.OpenedFromCopy() == 0 {
		t.Fatal("copy not taken for a copy")
	}
	return c
}
