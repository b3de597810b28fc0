package dhcpproxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
)

// walkExpire is expire's look at the transactions as it was before the
// deadlines' heap (txndue.go): every one pending at every tick, the loop
// body as it stood, then the OFFERs remembered. TestDuesDifferential
// holds the heap's expire to it.
func (x *txns) walkExpire(now time.Time) []timedOut {
	var tos []timedOut
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, t := range x.pending {
		if o := t.overtook; o != nil && !o.due.IsZero() && now.After(o.due) {
			o.due = time.Time{}
			tos = append(tos, timedOut{subj: regSubject(t.sub.mac, t.circuit, t.reg), mt: dhcpv4.MessageTypeRequest, putBack: o.putBack})
		}
		if now.After(t.deadline) {
			if t.msgType == dhcpv4.MessageTypeDiscover && !t.serverID.IsValid() && (!t.refused || t.nakBy.IsValid()) || t.msgType == dhcpv4.MessageTypeRequest ||
				t.msgType == dhcpv4.MessageTypeInform {
				tos = append(tos, timedOut{regSubject(t.sub.mac, t.circuit, t.reg), t.msgType, t.unreach, t.unlisted, t.malformed, t.otherNak, t.renew, t.nakBy, t.refused, t.selecting, t.putBack})
			}
			if wait := t.deadline.Sub(t.relayed); !t.resent.IsZero() && now.Sub(t.resent) < wait && t.renew == nil {
				t.relayed, t.deadline, t.resent = t.resent, t.resent.Add(wait), time.Time{}
				t.putBack = false
				continue
			}
			x.del(k)
		}
	}
	x.expireOffers(now)
	return tos
}

// diffRig is one of TestDuesDifferential's two tables, the heap's or the
// walk's, driven by the same operations.
type diffRig struct {
	x     txns
	isp   *ISP
	circs [2]*Circuit
	// msgs and parsed are each type's message, without and with a
	// server identifier (a SELECTING REQUEST).
	msgs    map[dhcpv4.MessageType][2][]byte
	parsed  map[dhcpv4.MessageType][2]*dhcpv4.DHCPv4
	dropped map[subKey]droppedTxns
}

func newDiffRig(tb testing.TB, floor int) *diffRig {
	tb.Helper()
	r := &diffRig{isp: &ISP{Name: "alpha", Servers: []netip.Addr{ispSID, netip.MustParseAddr("192.0.2.2")}},
		circs: [2]*Circuit{{Name: "acc0"}, {Name: "acc1", Port: 1}}, dropped: map[subKey]droppedTxns{},
		msgs: map[dhcpv4.MessageType][2][]byte{}, parsed: map[dhcpv4.MessageType][2]*dhcpv4.DHCPv4{}}
	r.x.init()
	// A low floor: pending and its heap remade every few deletions, in
	// the middle of expire's loop among them.
	r.x.mem.floor, r.x.parkMem.floor = floor, floor
	hw := net.HardwareAddr{2, 0, 0, 0, 1, 1}
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform} {
		var ms [2]*dhcpv4.DHCPv4
		var raws [2][]byte
		for sel := range 2 {
			mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(mt)}
			if sel == 1 {
				mods = append(mods, dhcpv4.WithServerIP(net.IP(ispSID.AsSlice())), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))))
			}
			m, err := dhcpv4.NewDiscovery(hw, mods...)
			if err != nil {
				tb.Fatal(err)
			}
			ms[sel], raws[sel] = m, m.ToBytes()
		}
		r.parsed[mt], r.msgs[mt] = ms, raws
	}
	return r
}

// sub is subscriber i's subKey on circuit c (0 or 1: the same MAC, a
// device moved, under the same pendKey).
func (r *diffRig) sub(i, c int) subKey {
	return subKey{circuit: circuitKey{port: uint8(c)}, mac: 0x020000000000 | uint64(i)}
}

// dueTimedOut is what a tick timed out, sorted (the walk's order is the
// map's), to compare.
func dueTimedOut(tos []timedOut) []string {
	var s []string
	for _, to := range tos {
		s = append(s, fmt.Sprintf("%x/%s/%v/%v/%v/%v/%v", to.subj.mac, to.subj.access, to.mt, to.refused, to.selecting, to.putBack, to.nakBy))
	}
	slices.Sort(s)
	return s
}

// pendingState is the table as a tick left it: each transaction's key,
// subscriber, type and times, to compare.
func (r *diffRig) pendingState(t0 time.Time) []string {
	r.x.mu.Lock()
	defer r.x.mu.Unlock()
	var s []string
	for k, t := range r.x.pending {
		od := "-"
		if o := t.overtook; o != nil {
			od = fmt.Sprint(o.due.Sub(t0), o.putBack, o.answered)
		}
		s = append(s, fmt.Sprintf("%v %v %v d=%v r=%v s=%v o=%v pb=%v", k, t.sub, t.msgType, t.deadline.Sub(t0), t.relayed.Sub(t0), t.resent.Sub(t0), od, t.putBack))
	}
	slices.Sort(s)
	return s
}

// TestDuesDifferential drives two tables with the same random operations,
// one expiring from the deadlines' heap (expire), the other by the walk of
// the whole table it replaced (walkExpire), and checks that every tick
// times out the same transactions and leaves the same table: begins of
// each type (retransmissions among them, resent; a REQUEST after its
// DISCOVER and back, overtaken; the same MAC and xid from another circuit,
// which replaces the transaction), OFFERs, extends, answers (take, an
// overtaken REQUEST's ACK and NAK), abandons, ends' parking (dropSub) and
// their commit or refusal (unpark: put back, resume; carried onto a
// retransmission's transaction, carryParked), with the table's bound
// reached, at ticks landing exactly on deadlines (the strict <), and
// pending remade (shrink, rebuildDues) within expire's loop. Both with
// times that have a monotonic reading (the proxy's) and times that have
// none (tests').
func TestDuesDifferential(t *testing.T) {
	for _, tc := range []struct {
		name  string
		t0    time.Time
		seed  uint64
		floor int // pending's remaking floor (mapMem.floor)
	}{
		{"monotonic", time.Now(), 1, 16},
		{"wall", time.Unix(1e9, 0), 2, 16},
		{"monotonic-noshrink", time.Now(), 3, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := 60_000
			if testing.Short() {
				steps = 20_000
			}
			dueDifferential(t, tc.t0, tc.seed, tc.floor, steps)
		})
	}
}

func dueDifferential(t *testing.T, t0 time.Time, seed uint64, floor, steps int) {
	heap, walk := newDiffRig(t, floor), newDiffRig(t, floor)
	rng := rand.New(rand.NewPCG(seed, 99))
	ms := time.Millisecond
	now := time.Duration(0)
	const subs, maxPending = 48, 80
	timeouts := []time.Duration{500 * ms, 2 * time.Second, 4 * time.Second}
	types := []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform}
	var ticks, timedOut, carried int
	for step := range steps {
		now += time.Duration(rng.IntN(12)) * 25 * ms
		at := t0.Add(now)
		i, xid, c := rng.IntN(subs), byte(rng.IntN(2)), 0
		if rng.IntN(20) == 0 {
			c = 1
		}
		sk := heap.sub(i, c)
		pk := pendKey{[4]byte{xid}, sk.mac, 0}
		op := rng.IntN(20)
		// Each operation's random choices are drawn once and given to
		// both tables.
		mt, sel := types[rng.IntN(len(types))], rng.IntN(2)
		timeout := timeouts[rng.IntN(len(timeouts))]
		ext := time.Duration(rng.IntN(200)) * 25 * ms
		restore := rng.IntN(3) != 0
		if step%2000 == 1999 {
			heap.addStale(rng, t0.Add(now))
		}
		var tos [2][]string
		for ri, r := range []*diffRig{heap, walk} {
			tx := r.x.get(pk)
			switch {
			case op < 6:
				n, _, err := r.x.begin(pk, sk, r.circs[c], r.isp, registry.Entry{}, nil, r.msgs[mt][sel], r.parsed[mt][sel], netip.Addr{}, 0, at, timeout, maxPending, maxPending)
				if err != nil && err != errPendingFull || err == nil && n == nil {
					t.Fatalf("step %d: begin: %v", step, err)
				}
			case op == 6 || op == 7:
				if tx != nil {
					from := r.isp.Servers[sel]
					r.x.offer(tx, r.isp, from, from, at, timeout)
				}
			case op == 8:
				if tx != nil {
					r.x.extend(tx, at.Add(ext))
				}
			case op == 9:
				if tx != nil {
					r.x.take(pk, tx)
				}
			case op == 10:
				if tx != nil {
					r.x.overtakenAnswer(tx)
				}
			case op == 11:
				if tx != nil {
					r.x.overtakenNak(tx, r.isp.Servers[sel], r.isp.Servers[sel], false)
				}
			case op == 12:
				if tx != nil {
					r.x.abandon(pk, tx)
				}
			case op == 13 || op == 14:
				if _, ok := r.dropped[sk]; !ok {
					r.dropped[sk] = r.x.dropSub(sk)
				}
			case op == 15 || op == 16:
				if d, ok := r.dropped[sk]; ok {
					delete(r.dropped, sk)
					if restore && ri == 0 {
						carried += len(d.keys)
					}
					r.x.unpark(sk, d, restore, maxPending, maxPending, at, timeout)
				}
			default:
				tos[ri] = dueTimedOut(r.expireAt(ri == 0, at))
			}
		}
		if op >= 17 {
			ticks++
			timedOut += len(tos[0])
			if !slices.Equal(tos[0], tos[1]) {
				t.Fatalf("step %d, tick at %v: the heap timed out %v, the walk %v", step, now, tos[0], tos[1])
			}
			if a, b := heap.pendingState(t0), walk.pendingState(t0); !slices.Equal(a, b) {
				t.Fatalf("step %d, tick at %v: the heap left pending\n%v\nthe walk\n%v", step, now, a, b)
			}
			heap.checkDues(t, maxPending)
		}
	}
	heap.x.mu.Lock()
	remade := heap.x.mem.remade
	heap.x.mu.Unlock()
	t.Logf("%d steps: %d ticks, %d timed out, %d parked put back or carried, pending remade %d times", steps, ticks, timedOut, carried, remade)
	if ticks == 0 || timedOut == 0 || carried == 0 || remade == 0 && floor < maxPending {
		t.Fatal("the operations did not reach what they are for")
	}
}

// addStale fills the heap with entries no transaction has (seq 0), as
// many as its bound leaves room for, around now: the next entry queued,
// wherever that is (begin, offer, unpark, expire's queueing again), finds
// the heap at its bound and rebuilds it from the table (rebuildDues).
func (r *diffRig) addStale(rng *rand.Rand, now time.Time) {
	x := &r.x
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.dues) < 2*len(x.pending)+shrinkFloor {
		at := monoNanos(now) + int64(rng.IntN(4000)-1000)*int64(time.Millisecond)
		x.dues = pushAt(x.dues, dueEntry{at: at, pk: pendKey{[4]byte{byte(rng.IntN(2))}, 0x020000000000 | uint64(rng.IntN(48)), 0}})
	}
}

// expireAt ticks r at at, by the heap (expire) or by the walk.
func (r *diffRig) expireAt(heap bool, at time.Time) []timedOut {
	if heap {
		return r.x.expire(at)
	}
	return r.x.walkExpire(at)
}

// checkDues checks the heap's invariants: ordered, within its bound (at
// a push: twice the transactions pending, at most maxPending, and
// shrinkFloor more), and every transaction pending with a due has its
// valid entry, at or before that due.
func (r *diffRig) checkDues(tb testing.TB, maxPending int) {
	tb.Helper()
	x := &r.x
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := 1; i < len(x.dues); i++ {
		if p := (i - 1) / 2; x.dues[p].at > x.dues[i].at {
			tb.Fatalf("heap out of order at %d", i)
		}
	}
	if len(x.dues) > 2*maxPending+shrinkFloor {
		tb.Fatalf("%d entries for %d pending", len(x.dues), len(x.pending))
	}
	valid := map[uint64]dueEntry{}
	for _, e := range x.dues {
		valid[e.seq] = e
	}
	for k, t := range x.pending {
		d := earliestDue(t)
		if d == noDue {
			continue
		}
		e, ok := valid[t.qSeq]
		if !ok || e.pk != k || e.at != t.qAt || e.at > d {
			tb.Fatalf("%v: due %d, its entry %+v (found %v), qAt %d", k, d, e, ok, t.qAt)
		}
	}
}
