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
	waitCursor(t, r.m, "beta", 5)
	r.stop()

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
