package engine

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ispmux/ispmux/classifier"
)

// The subscribers' shares of the ICMP error budget (budgets.go,
// icmpShare): a hostile-subscriber trial in the lab found that one
// subscriber sending TTL-1 packets as fast as it could spent its port's
// whole budget, and its neighbour's traceroute got 2 time-exceeded
// replies of 10.

// distinctICMPSlots draws p's ICMP seed until the subscribers' keys are
// hashed to buckets no two of them share: the tests' subscribers then
// each have a whole share, whatever the seed NewProcessor drew (a
// collision is a shared bucket, budgets.go).
func distinctICMPSlots(t *testing.T, p *Processor, keys ...uint64) {
	t.Helper()
	for seed := uint64(1); seed < 1000; seed++ {
		p.icmpSeed = seed
		used := map[uint64]bool{}
		ok := true
		for _, k := range keys {
			i, j := p.icmpSlots(k)
			if i == j || used[i] || used[j] {
				ok = false
				break
			}
			used[i], used[j] = true, true
		}
		if ok {
			return
		}
	}
	t.Fatal("no seed keeps the subscribers' ICMP buckets apart")
}

// repliesTo counts the frames of out whose destination MAC is mac.
func repliesTo(out [][]byte, mac uint64) int {
	n := 0
	for _, f := range out {
		if len(f) >= 6 && MAC48([6]byte(f[0:6])) == mac {
			n++
		}
	}
	return n
}

// TestICMPShareFloodSparesNeighbours: while sub1 floods TTL-1 frames
// (300, in batches of 60), its neighbour sub2 on the same port, whose 10
// TTL-1 frames go among them, gets its 10 time exceeded, and so do sub3's
// 10 afterwards: the flood spends its own share (icmpSubBurst) and none of
// the port's budget past it. Without the shares the flood spent the port's
// budget (50) in its first batch and sub2 got 0 or 1 of 10.
func TestICMPShareFloodSparesNeighbours(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	distinctICMPSlots(t, r.proc, classifier.Key(0, 0, sub1), classifier.Key(0, 0, sub2), classifier.Key(0, 100, sub3))
	flood := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 1, 4000, 33434)
	probe := udpFrame(t, sub2, accMAC, 0, "100.64.0.12", "198.51.100.10", 1, 4001, 33434)
	var toSub1, toSub2 int
	for range 5 {
		var batch [][]byte
		for k := range 60 {
			batch = append(batch, flood)
			if k == 20 || k == 40 {
				batch = append(batch, probe)
			}
		}
		out := r.send(0, batch...)
		toSub1 += repliesTo(out[0], sub1)
		toSub2 += repliesTo(out[0], sub2)
	}
	if toSub2 != 10 {
		t.Errorf("sub2 got %d time exceeded of 10 while sub1 flooded", toSub2)
	}
	if toSub1 < icmpSubBurst || toSub1 > icmpSubBurst+1 {
		t.Errorf("the flood got %d time exceeded of 300, want its share's burst, %d", toSub1, icmpSubBurst)
	}
	// sub3 (another circuit of the port) after the flood: the port's
	// budget has what the flood did not take.
	var after [][]byte
	for range 10 {
		after = append(after, udpFrame(t, sub3, accMAC, 100, "100.64.0.11", "198.51.100.10", 1, 4002, 33434))
	}
	if n := repliesTo(r.send(0, after...)[0], sub3); n != 10 {
		t.Errorf("sub3 got %d time exceeded of 10 after the flood", n)
	}
	c := r.s.Counters()[0]
	sent := uint64(toSub1 + toSub2 + 10)
	if c.ICMPErrors != sent {
		t.Errorf("ICMPErrors %d, %d sent", c.ICMPErrors, sent)
	}
	if got, want := c.ICMPLimited[ICMPBudgetSubscriber], uint64(300-toSub1); got != want {
		t.Errorf("icmp_errors_limited{budget=subscriber} %d, want %d (the flood's refused)", got, want)
	}
	if n := c.ICMPLimited[ICMPBudgetPort]; n != 0 {
		t.Errorf("icmp_errors_limited{budget=port} %d: the port's budget refused some", n)
	}
	if n := c.Drops[classifier.ReasonTTLExpired]; n != 320 {
		t.Errorf("ttl_expired %d, want 320", n)
	}
}

// TestICMPPortBudgetStays: the port's budget still bounds the port's
// errors: 12 subscribers, each within its share (10 TTL-1 frames each),
// get about icmpErrBurst between them, and the rest are counted refused
// by the port's budget. An ISP's frames (errors to the Internet) have the
// port's budget alone, no share of one sender: the ISP's router is the
// source MAC of every one of them.
func TestICMPPortBudgetStays(t *testing.T) {
	r := newRig(t, 64)
	r.resolve()
	var keys []uint64
	var frames [][]byte
	for k := range 12 {
		mac := uint64(0x020000000200 + k)
		addr := fmt.Sprintf("100.64.0.%d", 100+k)
		if err := r.c.Bind(Binding{Port: 0, MAC: mac, ISP: 0, IP: netip.MustParseAddr(addr)}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, classifier.Key(0, 0, mac))
		for range 10 {
			frames = append(frames, udpFrame(t, mac, accMAC, 0, addr, "198.51.100.10", 1, 4000, 33434))
		}
	}
	distinctICMPSlots(t, r.proc, keys...)
	got := len(r.send(0, frames[:60]...)[0]) + len(r.send(0, frames[60:]...)[0])
	c := r.s.Counters()[0]
	if got < icmpErrBurst || got > icmpErrBurst+2 || c.ICMPErrors != uint64(got) {
		t.Errorf("%d time exceeded for 12 subscribers' 120 TTL-1 frames (counter %d), want about the port's burst, %d", got, c.ICMPErrors, icmpErrBurst)
	}
	if s, p := c.ICMPLimited[ICMPBudgetSubscriber], c.ICMPLimited[ICMPBudgetPort]; s != 0 || p != uint64(120-got) {
		t.Errorf("refused: subscriber %d, port %d; want 0 and %d", s, p, 120-got)
	}

	// From the ISP: 60 TTL-1 frames of one router get the uplink port's
	// burst, not one sender's share.
	down := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.100", 1, 9, 4000)
	var flood [][]byte
	for range 60 {
		flood = append(flood, down)
	}
	got = len(r.send(1, flood...)[1])
	if got < icmpErrBurst || got > icmpErrBurst+2 {
		t.Errorf("%d time exceeded for the ISP's 60 TTL-1 frames, want about %d", got, icmpErrBurst)
	}
	if c := r.s.Counters()[1]; c.ICMPLimited[ICMPBudgetSubscriber] != 0 || c.ICMPLimited[ICMPBudgetPort] != uint64(60-got) {
		t.Errorf("uplink refused: subscriber %d, port %d; want 0 and %d", c.ICMPLimited[ICMPBudgetSubscriber], c.ICMPLimited[ICMPBudgetPort], 60-got)
	}
}

// TestICMPShareAllocs: a worker iteration of TTL-1 frames, answered and
// refused at a subscriber's share, allocates nothing.
func TestICMPShareAllocs(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	a := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 1, 4000, 33434)
	b := udpFrame(t, sub2, accMAC, 0, "100.64.0.12", "198.51.100.10", 1, 4000, 33434)
	for _, q := range r.q {
		q.Sink = nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 16 {
			r.q[0].Inject(a)
			r.q[0].Inject(b)
		}
		r.w.RunOnce()
	})
	if allocs != 0 {
		t.Errorf("worker iteration of TTL-1 frames allocates %.1f times", allocs)
	}
	if c := r.s.Counters()[0]; c.ICMPErrors == 0 || c.ICMPLimited[ICMPBudgetSubscriber] == 0 {
		t.Errorf("sent %d, refused %d: the iterations did not take both ways", c.ICMPErrors, c.ICMPLimited[ICMPBudgetSubscriber])
	}
}
