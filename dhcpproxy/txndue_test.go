package dhcpproxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
)

// dueRig is a transactions' table and the messages to begin exchanges
// in it, for the deadlines' heap's tests (txndue.go).
type dueRig struct {
	x        txns
	isp      *ISP
	c        *Circuit
	disc     *dhcpv4.DHCPv4
	req      *dhcpv4.DHCPv4
	rawDisc  []byte
	rawReq   []byte
	t0       time.Time
	timeout  time.Duration
	maxTotal int
}

func newDueRig(tb testing.TB) *dueRig {
	tb.Helper()
	r := &dueRig{isp: &ISP{Name: "alpha", Servers: []netip.Addr{ispSID}}, c: &Circuit{Name: "acc0"},
		t0: time.Now(), timeout: 10 * time.Second, maxTotal: 1 << 30}
	r.x.init()
	hw := net.HardwareAddr{2, 0, 0, 0, 1, 1}
	var err error
	if r.disc, err = dhcpv4.NewDiscovery(hw); err != nil {
		tb.Fatal(err)
	}
	if r.req, err = dhcpv4.NewDiscovery(hw, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)); err != nil {
		tb.Fatal(err)
	}
	r.rawDisc, r.rawReq = r.disc.ToBytes(), r.req.ToBytes()
	return r
}

// key is subscriber i's subKey and its transaction's key under xid.
func (r *dueRig) key(i int, xid byte) (subKey, pendKey) {
	sk := subKey{mac: 0x020000000000 | uint64(i)}
	return sk, pendKey{[4]byte{xid}, sk.mac, 0}
}

// begin relays subscriber i's DISCOVER (or REQUEST) under xid at t0+at.
func (r *dueRig) begin(tb testing.TB, i int, xid byte, request bool, at time.Duration) *txn {
	tb.Helper()
	sk, pk := r.key(i, xid)
	m, raw := r.disc, r.rawDisc
	if request {
		m, raw = r.req, r.rawReq
	}
	t, _, err := r.x.begin(pk, sk, r.c, r.isp, registry.Entry{}, nil, raw, m, netip.Addr{}, 0, r.t0.Add(at), r.timeout, r.maxTotal, r.maxTotal)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// expire runs expire at t0+at and returns the message types timed out.
func (r *dueRig) expire(at time.Duration) []dhcpv4.MessageType {
	var mts []dhcpv4.MessageType
	for _, to := range r.x.expire(r.t0.Add(at)) {
		mts = append(mts, to.mt)
	}
	return mts
}

// TestDueEarlierAfterExtend: a deadline moved later (extend) leaves the
// transaction's entry where it was, to come up early and be queued again;
// one moved earlier after that must be queued at once. A REQUEST after its
// DISCOVER (begin's new message) and an OFFER (offer) each set a deadline
// earlier than an extended one, and must time out at it. Fails without
// dueEarlier in begin and in offer (still pending at the new deadline).
func TestDueEarlierAfterExtend(t *testing.T) {
	s := time.Second
	t.Run("request", func(t *testing.T) {
		r := newDueRig(t)
		tx := r.begin(t, 1, 1, false, 0)
		r.x.extend(tx, r.t0.Add(time.Hour))
		if got := r.expire(10*s + s/2); len(got) != 0 || r.x.get(tx.pk) != tx {
			t.Fatalf("at 10.5 s, extended to an hour: timed out %v, pending %v", got, r.x.get(tx.pk) != nil)
		}
		r.begin(t, 1, 1, true, 11*s) // the REQUEST: its deadline 21 s
		got := r.expire(22 * s)
		if len(got) != 1 || got[0] != dhcpv4.MessageTypeRequest || r.x.get(tx.pk) != nil {
			t.Fatalf("at 22 s: timed out %v, pending %v; want the REQUEST timed out and ended", got, r.x.get(tx.pk) != nil)
		}
	})
	t.Run("offer", func(t *testing.T) {
		r := newDueRig(t)
		tx := r.begin(t, 1, 1, false, 0)
		r.x.extend(tx, r.t0.Add(time.Hour))
		r.expire(10*s + s/2)
		if r.x.offer(tx, r.isp, ispSID, ispSID, r.t0.Add(11*s), r.timeout) != offerTaken {
			t.Fatal("OFFER not taken")
		}
		r.expire(22 * s)
		if r.x.get(tx.pk) != nil {
			t.Fatal("at 22 s the DISCOVER offered at 11 s is still pending")
		}
	})
}

// TestDueOvertakenRequest: a DISCOVER that takes over its REQUEST (the
// client back to INIT under the xid) keeps the REQUEST's due, earlier than
// its own deadline: the REQUEST times out at it, the DISCOVER stays until
// its own.
func TestDueOvertakenRequest(t *testing.T) {
	s := time.Second
	r := newDueRig(t)
	r.begin(t, 1, 1, true, 0)          // REQUEST, due at 10 s
	tx := r.begin(t, 1, 1, false, 5*s) // DISCOVER, deadline 15 s
	if got := r.expire(11 * s); len(got) != 1 || got[0] != dhcpv4.MessageTypeRequest {
		t.Fatalf("at 11 s: timed out %v, want the REQUEST taken over", got)
	}
	if r.x.get(tx.pk) != tx {
		t.Fatal("the DISCOVER ended at the REQUEST's due")
	}
	if got := r.expire(16 * s); len(got) != 1 || got[0] != dhcpv4.MessageTypeDiscover || r.x.get(tx.pk) != nil {
		t.Fatalf("at 16 s: timed out %v, want the DISCOVER", got)
	}
}

// TestDuesStaleBounded: transactions begun and answered (taken) with no
// tick between leave their entries in the heap; it is rebuilt from the
// table once it holds twice the transactions and shrinkFloor more. Fails
// without the rebuild (100,000 entries for 10 pending).
func TestDuesStaleBounded(t *testing.T) {
	r := newDueRig(t)
	for i := range 10 {
		r.begin(t, 1000+i, 1, false, 0) // pending throughout
	}
	for i := range 100_000 {
		tx := r.begin(t, i%4096, byte(i>>12)+2, false, 0)
		if r.x.take(tx.pk, tx) == nil {
			t.Fatal("not taken")
		}
	}
	r.x.mu.Lock()
	n, p := len(r.x.dues), len(r.x.pending)
	r.x.mu.Unlock()
	if p != 10 || n > 2*p+shrinkFloor {
		t.Fatalf("%d entries for %d pending: want at most %d", n, p, 2*p+shrinkFloor)
	}
	if got := r.expire(11 * time.Second); len(got) != 10 {
		t.Fatalf("timed out %d, want the 10 pending", len(got))
	}
}

// TestDuesModel drives the table with random begins, OFFERs, extends,
// answers and ticks, and checks after each tick what the walk of the
// whole table gave: no transaction left pending with a deadline, or a
// taken-over REQUEST's due, before the tick. Fails with begin's or
// offer's dueEarlier removed, or with the entries not queued again; not
// with unpark's, nor with a tick that times out too much (parking, the
// timeouts themselves and the heap's rebuilds are TestDuesDifferential's).
func TestDuesModel(t *testing.T) {
	r := newDueRig(t)
	rng := rand.New(rand.NewPCG(7, 11))
	ms := time.Millisecond
	now := time.Duration(0)
	for step := range 20_000 {
		now += time.Duration(rng.IntN(50)) * ms
		i, xid := rng.IntN(64), byte(rng.IntN(3))
		_, pk := r.key(i, xid)
		switch op := rng.IntN(10); {
		case op < 3:
			r.begin(t, i, xid, rng.IntN(2) == 0, now)
		case op == 3:
			if tx := r.x.get(pk); tx != nil {
				r.x.offer(tx, r.isp, ispSID, ispSID, r.t0.Add(now), r.timeout)
			}
		case op == 4:
			if tx := r.x.get(pk); tx != nil {
				r.x.extend(tx, r.t0.Add(now+time.Duration(rng.IntN(30_000))*ms))
			}
		case op == 5:
			if tx := r.x.get(pk); tx != nil {
				r.x.take(pk, tx)
			}
		default:
			r.expire(now)
			at := r.t0.Add(now)
			r.x.mu.Lock()
			for k, tx := range r.x.pending {
				o := tx.overtook
				if at.After(tx.deadline) || o != nil && !o.due.IsZero() && at.After(o.due) {
					r.x.mu.Unlock()
					t.Fatalf("step %d: %v pending past due after the tick at %v: deadline %v", step, k, now, tx.deadline.Sub(r.t0))
				}
			}
			r.x.mu.Unlock()
		}
	}
}

// BenchmarkExpireIdle is a tick with pending transactions none of which
// is due: what expire costs under txns.mu, which every DHCP message
// takes, while an outage's exchanges wait for the ISPs. It walked the
// whole table (1M at dhcp.max_pending's bound); it now looks at the
// heap's top.
func BenchmarkExpireIdle(b *testing.B) {
	for _, n := range []int{10_000, 1 << 20} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			var x txns
			x.init()
			isp := &ISP{Name: "alpha"}
			now := time.Now()
			x.mu.Lock()
			for i := range n {
				sk := subKey{mac: 0x020000000000 | uint64(i)}
				x.put(pendKey{[4]byte{1}, sk.mac, 0}, &txn{sub: sk, isp: isp, msgType: dhcpv4.MessageTypeDiscover, deadline: now.Add(time.Hour)})
			}
			x.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				if len(x.expire(now)) != 0 {
					b.Fatal("timed out")
				}
			}
		})
	}
}

// TestDueParkedRequestCarried: a REQUEST parked while its subscriber's
// binding end is committed, the client's DISCOVER under the xid begun
// meanwhile, then the end refused and the REQUEST put back: the DISCOVER
// takes it over (carryParked) with the REQUEST's due, earlier than its
// own deadline, and the REQUEST times out at that due. Fails without
// unpark's dueEarlier (nothing times out until the DISCOVER's deadline).
func TestDueParkedRequestCarried(t *testing.T) {
	s := time.Second
	r := newDueRig(t)
	r.begin(t, 1, 1, true, 0) // REQUEST, due at 10 s
	sk, _ := r.key(1, 1)
	d := r.x.dropSub(sk)
	tx := r.begin(t, 1, 1, false, 5*s) // DISCOVER, deadline 15 s
	r.x.unpark(sk, d, true, r.maxTotal, r.maxTotal, r.t0.Add(6*s), r.timeout)
	if tx.overtook == nil {
		t.Fatal("the DISCOVER did not take the parked REQUEST over")
	}
	if got := r.expire(11 * s); len(got) != 1 || got[0] != dhcpv4.MessageTypeRequest {
		t.Fatalf("at 11 s: timed out %v, want the REQUEST put back", got)
	}
}

// TestRapidReplaced: a rapid-commit win replaced under its key before its
// time (another DISCOVER of the client's under the xid won again) stays
// until its own time: the first win's entry, coming up, passes over it.
// Fails without the check that the entry is the key's win (the second
// forgotten at the first's time).
func TestRapidReplaced(t *testing.T) {
	var x txns
	x.init()
	now := time.Now()
	pk := pendKey{[4]byte{1}, 0x020000000001, 0}
	x.mu.Lock()
	x.winRapid(pk, &rapidWin{until: now.Add(time.Second)})
	w := &rapidWin{until: now.Add(10 * time.Second)}
	x.winRapid(pk, w)
	x.mu.Unlock()
	x.expire(now.Add(2 * time.Second))
	if got, ok := x.rapidWon(pk); !ok || !got.until.Equal(w.until) {
		t.Fatalf("at 2 s: win %+v (%v), want the second, until 10 s", got, ok)
	}
	x.expire(now.Add(11 * time.Second))
	if _, ok := x.rapidWon(pk); ok {
		t.Fatal("at 11 s the win is still remembered")
	}
}

// BenchmarkExpireRapidIdle is a tick with rapid-commit wins none of which
// is past its time (an outage's burst of DISCOVERs with rapid commit at
// ISPs with several servers leaves one an ACK, for dhcp.timeout): expire
// walked them all; it now looks at their heap's top.
func BenchmarkExpireRapidIdle(b *testing.B) {
	for _, n := range []int{10_000, 1 << 20} {
		b.Run(fmt.Sprintf("wins=%d", n), func(b *testing.B) {
			var x txns
			x.init()
			now := time.Now()
			x.mu.Lock()
			for i := range n {
				x.winRapid(pendKey{[4]byte{1}, 0x020000000000 | uint64(i), 0}, &rapidWin{until: now.Add(time.Hour)})
			}
			x.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				x.expire(now)
			}
		})
	}
}
