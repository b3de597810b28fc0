package dhcpproxy

import (
	"fmt"
	"testing"
	"time"
)

// TestExpireOffersInOrder: the OFFERs remembered are forgotten offerMemory
// after they were remembered, as when expire walked them all: not before;
// one replaced by a later OFFER lives at least the later one's time (its
// entry queued again behind later ones); one put back by unpark
// (remembered again, behind later ones) is forgotten too. The queue gives
// its room back once a burst has drained.
func TestExpireOffersInOrder(t *testing.T) {
	var x txns
	x.init()
	t0 := time.Unix(1e9, 0)
	isp := &ISP{Name: "alpha"}
	sk := func(i int) subKey { return subKey{mac: 0x020000000000 | uint64(i)} }
	const n = 20_000
	for i := range n { // one a millisecond, in time order as offer remembers them
		x.remember(sk(i), offer{isp: isp, at: t0.Add(time.Duration(i) * time.Millisecond)})
		if i == 10_000 { // 7 OFFERed again at +10 s: its entry is queued again
			x.remember(sk(7), offer{isp: isp, at: t0.Add(10 * time.Second)})
		}
	}
	// 3's taken by an end (dropSub) while its time comes up, then put back
	// (unpark) with its own time: behind the others in the queue, it is
	// forgotten once the queue reaches it.
	delete(x.offered, sk(3))
	x.expireOffers(t0.Add(offerMemory + 9*time.Millisecond))
	x.remember(sk(3), offer{isp: isp, at: t0.Add(3 * time.Millisecond)})
	for i := range 12 {
		_, ok := x.offered[sk(i)]
		want := i >= 10 || i == 7 || i == 3
		if ok != want {
			t.Errorf("offer %d remembered %v at +offerMemory+9ms, want %v", i, ok, want)
		}
	}
	x.expireOffers(t0.Add(offerMemory + 10*time.Second))
	if _, ok := x.offered[sk(3)]; !ok {
		t.Error("the put-back offer 3 forgotten before the queue reached it")
	}
	x.expireOffers(t0.Add(offerMemory + 30*time.Second)) // past the last
	if len(x.offered) != 0 {
		t.Fatalf("%d OFFERs left, want none (the put-back one too)", len(x.offered))
	}
	if len(x.offerQ)-x.offerHead != 0 || cap(x.offerQ) > shrinkFloor {
		t.Fatalf("drained queue: %d entries, room %d; want none and its room given back", len(x.offerQ)-x.offerHead, cap(x.offerQ))
	}
}

// TestRememberOneEntryPerSubscriber: a subscriber OFFERed again and again
// (a DISCOVER every quarter second, or an ISP's server answering one
// DISCOVER over and over) has one entry in offerQ, as it has one in
// offered, where each OFFER queued one (10,000 OFFERs: 10,000 entries); it
// is forgotten offerMemory after its last OFFER, once the queue reaches
// its entry queued again, not before.
func TestRememberOneEntryPerSubscriber(t *testing.T) {
	var x txns
	x.init()
	t0 := time.Unix(1e9, 0)
	isp := &ISP{Name: "alpha"}
	storm := subKey{mac: 0x020000000001}
	const n = 10_000
	for i := range n { // one OFFER every 10 ms for 100 s, another subscriber's now and then
		x.remember(storm, offer{isp: isp, at: t0.Add(time.Duration(i) * 10 * time.Millisecond)})
		if i%1000 == 0 {
			x.remember(subKey{mac: 0x020000100000 | uint64(i)}, offer{isp: isp, at: t0.Add(time.Duration(i) * 10 * time.Millisecond)})
		}
	}
	if q := len(x.offerQ) - x.offerHead; q != 1+n/1000 {
		t.Fatalf("%d OFFERs of one subscriber and %d of others: %d entries queued, want %d", n, n/1000, q, 1+n/1000)
	}
	last := t0.Add((n - 1) * 10 * time.Millisecond)
	for at := t0; at.Before(last.Add(offerMemory)); at = at.Add(time.Second) {
		x.expireOffers(at)
		if _, ok := x.offered[storm]; !ok {
			t.Fatalf("forgotten at %v, before offerMemory after its last OFFER", at.Sub(t0))
		}
		if q := len(x.offerQ) - x.offerHead; q > 1+n/1000 {
			t.Fatalf("at %v: %d entries queued, want at most %d", at.Sub(t0), q, 1+n/1000)
		}
	}
	x.expireOffers(last.Add(2 * offerMemory))
	if len(x.offered) != 0 || len(x.offerQ) != x.offerHead {
		t.Fatalf("past its time and the queue's: %d remembered, %d queued", len(x.offered), len(x.offerQ)-x.offerHead)
	}
}

// BenchmarkExpireOffers is a tick's forgetting of OFFERs with n
// remembered, none due: what x.mu is held for at every tick of the
// offerMemory after an outage's burst.
func BenchmarkExpireOffers(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var x txns
			x.init()
			now := time.Now()
			isp := &ISP{Name: "alpha"}
			for i := range n {
				x.remember(subKey{mac: 0x020000000000 | uint64(i)}, offer{isp: isp, at: now})
			}
			b.ResetTimer()
			for b.Loop() {
				x.expireOffers(now)
			}
			if len(x.offered) != n {
				b.Fatal(len(x.offered))
			}
		})
	}
}
