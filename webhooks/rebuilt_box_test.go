package webhooks

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// A box rebuilt with a new store delivers to the same receiver: every
// webhook-id of the new box is one the receiver has not had, above the
// old box's, so a receiver that dedupes by webhook-id (Standard Webhooks)
// takes every new event. Before, the new store numbered from 1 again:
// its first events had the old box's first ids, and were dropped as
// duplicates.
func TestWebhookIDsAfterRebuiltBox(t *testing.T) {
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	cfg := &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}
	old := openStore(t, "", subscribers.Options{NoSync: true})
	r := start(t, cfg, old)
	for i := range 5 {
		addEvent(t, old, "beta", subscribers.EventBound, i)
	}
	rc.waitAcked(5, 5*time.Second)
	r.stop()

	rebuilt := openStore(t, "", subscribers.Options{NoSync: true})
	start(t, cfg, rebuilt) // a new webhook: from the store's newest on
	var fresh []subscribers.Event
	for i := range 3 {
		fresh = append(fresh, addEvent(t, rebuilt, "beta", subscribers.EventBound, 10+i))
	}
	got := rc.waitAcked(8, 5*time.Second)
	seen := map[string]bool{}
	var dedup []string // as a receiver deduping by webhook-id keeps them
	for _, id := range got {
		if !seen[id] {
			seen[id] = true
			dedup = append(dedup, id)
		}
	}
	if want := ids(fresh...); len(dedup) != 8 || strings.Join(dedup[5:], ",") != strings.Join(want, ",") {
		t.Fatalf("the receiver, deduping by webhook-id, keeps %v; want the old box's 5 and the new box's %v", dedup, want)
	}
	prev := uint64(0)
	for _, id := range dedup {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n <= prev || n >= 1<<53 {
			t.Errorf("webhook-ids %v: not increasing numbers below 2^53", dedup)
			break
		}
		prev = n
	}
}
