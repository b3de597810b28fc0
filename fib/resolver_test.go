package fib

import (
	"slices"
	"testing"
	"time"
)

// resolverTest is a Resolver over fresh Uplinks with a fake clock: at(d)
// sets the clock to t0+d.
type resolverTest struct {
	t   *testing.T
	u   *Uplinks
	r   *Resolver
	t0  time.Time
	now time.Time
}

const (
	rtISP   = 3
	rtGW    = 0x64400001 // 100.64.0.1
	rtMAC   = 0x00_1b_21_00_00_01
	rtOther = 0x00_1b_21_00_00_02
)

func newResolverTest(t *testing.T) *resolverTest {
	u := new(Uplinks)
	u.Configure(rtISP, testUplink(rtGW))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &resolverTest{t: t, u: u, r: NewResolver(u), t0: t0, now: t0}
}

func (rt *resolverTest) at(d time.Duration) *resolverTest {
	rt.now = rt.t0.Add(d)
	return rt
}

// due checks Due's answer at the current time.
func (rt *resolverTest) due(want ...uint8) {
	rt.t.Helper()
	got := rt.r.Due(rt.now, nil)
	if !slices.Equal(got, want) {
		rt.t.Fatalf("t0+%v: Due = %v, want %v", rt.now.Sub(rt.t0), got, want)
	}
}

// learn checks Learn's answer at the current time.
func (rt *resolverTest) learn(ip uint32, mac uint64, want bool) {
	rt.t.Helper()
	if got := rt.r.Learn(rtISP, ip, mac, rt.now); got != want {
		rt.t.Fatalf("t0+%v: Learn(%#x, %#x) = %v, want %v", rt.now.Sub(rt.t0), ip, mac, got, want)
	}
}

// state checks the Resolver state and the published uplink.
func (rt *resolverTest) state(want NeighState, mac uint64) {
	rt.t.Helper()
	st, m, _ := rt.r.State(rtISP)
	up := rt.u.Load().Get(rtISP)
	if st != want || m != mac || up.GatewayMAC != mac || up.Resolved != (mac != 0) {
		rt.t.Fatalf("t0+%v: state %v mac %#x, uplink mac %#x resolved %v; want %v mac %#x",
			rt.now.Sub(rt.t0), st, m, up.GatewayMAC, up.Resolved, want, mac)
	}
}

func TestResolverResolveRefreshWithdraw(t *testing.T) {
	rt := newResolverTest(t)
	s := time.Second

	// Unresolved: a request at once, then every second.
	rt.at(0).due(rtISP)
	rt.state(Incomplete, 0)
	rt.at(999 * time.Millisecond).due()
	rt.at(1 * s).due(rtISP)
	rt.at(2500 * time.Millisecond).due(rtISP)
	rt.at(3 * s).due()

	// Only the gateway's own address, with a unicast MAC, is learnt.
	rt.learn(rtGW+1, rtMAC, false)
	rt.learn(rtGW, 0, false)
	rt.learn(rtGW, BroadcastMAC, false)
	rt.learn(rtGW, 0x01_00_5e_00_00_01, false) // multicast
	if rt.r.Learn(rtISP+1, rtGW, rtMAC, rt.now) {
		t.Fatal("Learn for an unconfigured ISP")
	}
	rt.state(Incomplete, 0)

	rt.at(3200*time.Millisecond).learn(rtGW, rtMAC, true)
	rt.state(Reachable, rtMAC)
	rt.at(5*s).learn(rtGW, rtMAC, false) // same MAC, fresher
	rt.at(6 * s).due()
	rt.at(34*s + 999*time.Millisecond).due()

	// 30s after the last reply: refresh, still using the MAC.
	rt.at(35 * s).due(rtISP)
	rt.state(Stale, rtMAC)
	rt.at(35*s + 500*time.Millisecond).due()
	rt.at(36 * s).due(rtISP) // probe 2
	rt.at(37 * s).due(rtISP) // probe 3
	rt.state(Stale, rtMAC)
	rt.at(37*s + 999*time.Millisecond).due()

	// Probe 3 unanswered for a second: withdrawn, and asked again.
	rt.at(38 * s).due(rtISP)
	rt.state(Incomplete, 0)
	rt.at(38*s + 500*time.Millisecond).due()
	rt.at(39 * s).due(rtISP)

	rt.at(39*s+100*time.Millisecond).learn(rtGW, rtOther, true)
	rt.state(Reachable, rtOther)
}

func TestResolverStaleAnswered(t *testing.T) {
	rt := newResolverTest(t)
	s := time.Second
	rt.at(0).due(rtISP)
	rt.learn(rtGW, rtMAC, true)
	rt.at(30 * s).due(rtISP)
	rt.at(31 * s).due(rtISP)
	rt.at(31*s+500*time.Millisecond).learn(rtGW, rtMAC, false)
	rt.state(Reachable, rtMAC)
	rt.at(33 * s).due() // no withdrawal, no probing
	rt.at(61 * s).due()
	rt.at(61*s + 500*time.Millisecond).due(rtISP)
	rt.state(Stale, rtMAC)

	// The gateway moves to another MAC while stale.
	rt.at(62*s).learn(rtGW, rtOther, true)
	rt.state(Reachable, rtOther)
}

func TestResolverFollowsConfig(t *testing.T) {
	rt := newResolverTest(t)
	s := time.Second
	rt.at(0).due(rtISP)
	rt.learn(rtGW, rtMAC, true)

	// Same gateway, new address: the MAC stays and so does the state.
	up := testUplink(rtGW)
	up.Addr++
	rt.u.Configure(rtISP, up)
	rt.state(Reachable, rtMAC)
	rt.at(1 * s).due()

	// New gateway: unresolved at once, asked at once; the old one is ignored.
	rt.u.Configure(rtISP, testUplink(rtGW+10))
	rt.at(2*s).learn(rtGW, rtMAC, false)
	rt.state(Incomplete, 0)
	rt.due(rtISP)
	rt.learn(rtGW+10, rtOther, true)
	rt.state(Reachable, rtOther)

	// Moved to another VLAN, same gateway: Configure drops the MAC and the
	// Resolver starts over.
	up = testUplink(rtGW + 10)
	up.VLAN = 300
	rt.u.Configure(rtISP, up)
	rt.state(Incomplete, 0)
	rt.at(3 * s).due(rtISP)

	// A MAC published by someone else is adopted as stale and confirmed.
	rt.u.SetGatewayMAC(rtISP, rtMAC)
	rt.state(Stale, rtMAC)
	rt.at(4 * s).due(rtISP)

	// Removed: nothing due, nothing learnt.
	rt.u.Configure(rtISP, Uplink{})
	rt.at(10 * s).due()
	rt.learn(rtGW+10, rtOther, false)
	rt.state(Incomplete, 0)

	// A second ISP with the same gateway address is resolved separately.
	rt.u.Configure(rtISP, testUplink(rtGW))
	rt.u.Configure(rtISP+1, testUplink(rtGW))
	rt.at(11*s).due(rtISP, rtISP+1)
	rt.learn(rtGW, rtMAC, true)
	if rt.u.Load().Get(rtISP + 1).Resolved {
		t.Fatal("learning ISP 3's gateway resolved ISP 4's")
	}
}

func TestResolverDueAllocs(t *testing.T) {
	rt := newResolverTest(t)
	out := make([]uint8, 0, MaxISPs)
	now := rt.t0
	if a := testing.AllocsPerRun(100, func() {
		now = now.Add(time.Second)
		out = rt.r.Due(now, out[:0])
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

func TestNeighStateString(t *testing.T) {
	for s, want := range map[NeighState]string{Incomplete: "incomplete", Reachable: "reachable", Stale: "stale", 9: "NeighState(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

// Withdraw (the uplink lost carrier) unpublishes a resolved gateway at once
// and resolution starts over; an unresolved one is left alone.
func TestResolverWithdraw(t *testing.T) {
	rt := newResolverTest(t)
	if rt.r.Withdraw(rtISP) {
		t.Fatal("withdrew an unresolved gateway")
	}
	rt.due(rtISP)
	rt.learn(rtGW, rtMAC, true)
	rt.state(Reachable, rtMAC)
	if !rt.r.Withdraw(rtISP) {
		t.Fatal("Withdraw of a reachable gateway reported nothing")
	}
	rt.state(Incomplete, 0)
	rt.at(time.Millisecond).due(rtISP) // asked again at once, not after ProbeInterval
	rt.at(2*time.Millisecond).learn(rtGW, rtMAC, true)
	rt.state(Reachable, rtMAC)
}
