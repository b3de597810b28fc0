package fib

import (
	"testing"
	"time"
)

// TestLearnFromRules: which ARP may move the gateway to another MAC.
// A VRRP takeover (GARP) moves it at once, even right after the old
// router's reply; a router replaced without GARP is followed from its
// request for one of our addresses (at once) or its answer to a refresh
// probe; a request from the gateway's address for someone else, or a
// second reply within LockTime, does not move it.
func TestLearnFromRules(t *testing.T) {
	rt := newResolverTest(t)
	ms := time.Millisecond
	lf := func(mac uint64, src ARPSource, want bool) {
		t.Helper()
		if got := rt.r.LearnFrom(rtISP, rtGW, mac, src, rt.now); got != want {
			t.Fatalf("t0+%v: LearnFrom(%#x, %d) = %v, want %v", rt.now.Sub(rt.t0), mac, src, got, want)
		}
	}
	rt.at(0).due(rtISP)
	// Nothing known: a request for someone else resolves nothing.
	lf(rtOther, FromRequestOther, false)
	rt.state(Incomplete, 0)
	// Two answers to one request: the first wins.
	rt.at(10*ms).learn(rtGW, rtMAC, true)
	rt.at(20*ms).learn(rtGW, rtOther, false)
	rt.state(Reachable, rtMAC)
	// A host asking for others with the gateway's address: never.
	rt.at(5 * time.Second)
	lf(rtOther, FromRequestOther, false)
	lf(rtMAC, FromRequestOther, false) // same MAC: a confirmation, no change
	rt.state(Reachable, rtMAC)
	// VRRP takeover right after a confirmation: GARP wins at once.
	lf(rtOther, FromGARP, true)
	rt.state(Reachable, rtOther)
	// A reply from the old MAC within LockTime: not taken.
	rt.at(5*time.Second+500*ms).learn(rtGW, rtMAC, false)
	// Back, silently, by a request for our address (the router's
	// neighbour table flushed when its MAC changed): at once.
	lf(rtMAC, FromRequestToUs, true)
	rt.state(Reachable, rtMAC)
	// Old MAC silent; the new router answers the refresh probe.
	rt.at(36*time.Second + 1*ms).due(rtISP)
	rt.state(Stale, rtMAC)
	rt.at(36*time.Second+5*ms).learn(rtGW, rtOther, true)
	rt.state(Reachable, rtOther)
}
