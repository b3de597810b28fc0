package dhcpproxy

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// TestMassExpiryInBatches: an area's power cut leaves its modems' leases
// to run out together at runtime (100k–1M). The tick ends them
// revokeBatch to a store transaction (expireEach), expireRound
// transactions a tick at most, the oldest first: one transaction each
// (side by side through the group commit, ~21 an fsync) held one tick,
// and the transactions' timeouts, probes and intents behind it, 7.9 s at
// 20k (935 transactions). The commits are counted, not timed, and so are the leases a tick
// ends. Each binding is gone from the store, the lease table and the
// forwarding tables, with one expired event each ("lease expired"), and
// counted once. DHCPPROXY_BULKEND_N sets the count (a trial at 100k).
func TestMassExpiryInBatches(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 5000
	}
	if s := os.Getenv("DHCPPROXY_BULKEND_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	p, st, tab := bulkRig(t, n, nil)
	later := time.Now().Add(3 * time.Hour) // every lease (an hour) ran out
	before := st.CommitStats().Transactions
	start := time.Now()
	ticks, longest, most := 0, time.Duration(0), 0
	for left := n; left > 0; ticks++ {
		if ticks > n/revokeBatch+10 {
			t.Fatalf("%d leases left after %d ticks", left, ticks)
		}
		t0 := time.Now()
		p.expire(later.Add(time.Duration(ticks) * 250 * time.Millisecond))
		longest = max(longest, time.Since(t0))
		now := p.leases.len()
		most = max(most, left-now)
		left = now
	}
	took := time.Since(start)
	txs := st.CommitStats().Transactions - before
	t.Logf("%d leases expired in %v over %d ticks (the longest %v, at most %d leases a tick), %d store transactions",
		n, took.Round(time.Millisecond), ticks, longest.Round(time.Millisecond), most, txs)
	if max := uint64((n+revokeBatch-1)/revokeBatch) + 8; txs > max {
		t.Errorf("%d store transactions to expire %d leases, want at most %d (batches of %d)", txs, n, max, revokeBatch)
	}
	if lim := expireRound * revokeBatch; most > lim {
		t.Errorf("a tick ended %d leases, want at most %d (%d commits of %d)", most, lim, expireRound, revokeBatch)
	}
	if c := p.Counters(); c["expired"] != uint64(n) || c["expiry_superseded"] != 0 {
		t.Errorf("counted %d expired, %d superseded; want %d and 0", c["expired"], c["expiry_superseded"], n)
	}
	left := 0
	if err := st.ForEachBindingBorrowed(func(*subscribers.Binding) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d bindings still stored", left)
	}
	evs, err := st.Events(0, 2*n+100)
	if err != nil {
		t.Fatal(err)
	}
	ended := map[[6]byte]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventExpired {
			if e.Reason != "lease expired" {
				t.Fatalf("expired event with reason %q", e.Reason)
			}
			ended[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if ended[m] != 1 {
			t.Fatalf("binding %d: %d expired events, want 1", i, ended[m])
		}
		if _, ok := p.Lease(accPort, 0, binding.MAC48(m)); ok || tab.isBound(binding.MAC48(m)) {
			t.Fatalf("binding %d still leased (%v) or forwarding (%v)", i, ok, tab.isBound(binding.MAC48(m)))
		}
	}
	if got := p.PendingIntents(); got != 0 {
		t.Errorf("%d intents pending, want none (an expiry tells the ISP nothing)", got)
	}
}

// A mass expiry's batches are cut stripe by stripe (byStripe), as a bulk
// revocation's: with the last stripe of subMu held (an ACK committing),
// the tick's batches of the other stripes end their leases meanwhile, and
// only the batch that needs the held stripe waits. Without byStripe every
// batch of 512 has subscribers of all 64 stripes and none ends.
func TestMassExpiryBatchesByStripe(t *testing.T) {
	const n = 4096 // one tick's round
	p, _, _ := bulkRig(t, n, nil)
	macs := make([]uint64, n)
	for i := range n {
		macs[i] = binding.MAC48(removedCircuitMAC(i))
	}
	got, before, last := endedWithLastStripeHeld(t, p, macs, func() { p.expire(time.Now().Add(3 * time.Hour)) })
	if got < before-revokeBatch {
		t.Errorf("with stripe %d held, %d of the %d leases of the other stripes ended; want all but the last batch's", last, got, before)
	}
	if c := p.Counters(); c["expired"] != n {
		t.Errorf("counted %d expired, want %d", c["expired"], n)
	}
}
