package dhcpproxy

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// slowCompletes is a store whose completions take a while: a commit of
// completeBatch intents given 300 ms (a slow or busy disk), so a round
// that settles a backlog of several batches holds Run's timers for
// seconds all the same.
type slowCompletes struct {
	*subscribers.Store
}

func (s slowCompletes) CompleteIntent(id uint64) error {
	time.Sleep(10 * time.Millisecond)
	return s.Store.CompleteIntent(id)
}

func (s slowCompletes) CompleteIntents(ids []uint64) error {
	time.Sleep(300 * time.Millisecond)
	return s.Store.CompleteIntents(ids)
}

// Progress moves while Run's round settles many intents, a commit at a
// time (completeBatch to one): the service watchdog
// (appliance/watchdog.go) reads it, and a round that works through a
// backlog (a start after an ISP's outage, thousands of
// RELEASEs pending) is no stall. It counted rounds only, and a round of
// 12,000 intents at ~1.2 ms each, longer than half of WatchdogSec=30s,
// withheld the ping: systemd killed and restarted ispmux, which found
// the rest pending again.
func TestProgressMovesWithinLongRound(t *testing.T) {
	r := newPRig(t)
	r.p = New(r.p.config(), slowCompletes{r.store}, r.p.reg, r.tab, r.snd, nil)
	n := 5 * completeBatch // 1.5 s of completions in one round
	sent := time.Now().Add(-time.Second)
	for i := range n {
		in := subscribers.Intent{ID: uint64(i + 1), Kind: subscribers.IntentRelease, ISP: "alpha", Access: "acc0",
			MAC: [6]byte{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, IP: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), Message: []byte{1}}
		r.p.intents.add(in, false)
		r.p.intents.markSent(in.ID, sent)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.p.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// Into the round (its first tick is at 250 ms), then twice 500 ms
	// apart while it still runs.
	time.Sleep(600 * time.Millisecond)
	before := r.p.Progress()
	time.Sleep(500 * time.Millisecond)
	if r.p.intents.len() == 0 {
		t.Skip("the round ended already: the machine is faster than the test assumes")
	}
	if after := r.p.Progress(); after == before {
		t.Errorf("Progress %d, unchanged over 500 ms of a round settling %d intents (%d left)", after, n, r.p.intents.len())
	}
}
