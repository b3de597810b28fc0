package dhcpproxy

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/ispmux/ispmux/subscribers"
)

// stepWall returns t with its wall clock reading moved by d and its
// monotonic one kept: what time.Now reads after an NTP step of d (or a
// box without an RTC setting its clock). It reaches into time.Time
// (wall: the seconds since 1885 from bit 30 when a monotonic reading is
// present, ext: that reading) and checks what it made, so a change of
// that layout fails the test rather than passing it for nothing.
func stepWall(tb testing.TB, t time.Time, d time.Duration) time.Time {
	tb.Helper()
	if d%time.Second != 0 {
		tb.Fatalf("stepWall: %v is not whole seconds", d)
	}
	type timeLayout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	s := t
	tl := (*timeLayout)(unsafe.Pointer(&s))
	if tl.wall&(1<<63) == 0 {
		tb.Fatal("stepWall: t has no monotonic reading")
	}
	tl.wall = uint64(int64(tl.wall) + int64(d/time.Second)<<30)
	if s.Sub(t) != 0 || s.Round(0).Sub(t.Round(0)) != d {
		tb.Fatalf("stepWall: time.Time's layout changed (monotonic %v, wall %v apart; want 0, %v)", s.Sub(t), s.Round(0).Sub(t.Round(0)), d)
	}
	return s
}

// TestCutsDueClockStep: a move's deadline is ClientLeaseMax of the
// proxy's time, which a step of the wall clock does not move (time.Now's
// monotonic reading, as when cutsDue compared time.Times): stepped an hour
// forward, a pending cut is not due; stepped an hour back, a due one is.
func TestCutsDueClockStep(t *testing.T) {
	t0 := time.Now()
	lt := cutsTable(t, 1, t0.Add(time.Minute))
	if due := lt.cutsDue(stepWall(t, t0, time.Hour)); len(due) != 0 {
		t.Fatalf("the wall clock stepped an hour forward: %d cuts due a minute early, want none", len(due))
	}
	if due := lt.cutsDue(stepWall(t, t0.Add(time.Minute), -time.Hour)); len(due) != 1 {
		t.Fatalf("the wall clock stepped an hour back: %d cuts due at their deadline, want 1", len(due))
	}
}

// TestExpireOffersClockStep: an OFFER is remembered offerMemory of the
// proxy's time, whatever the wall clock's steps: stepped forward an hour,
// none is forgotten early; stepped back an hour, those due are forgotten
// and the queue does not wait behind them.
func TestExpireOffersClockStep(t *testing.T) {
	var x txns
	x.init()
	t0 := time.Now()
	isp := &ISP{Name: "alpha"}
	a, b := subKey{mac: 0x020000000001}, subKey{mac: 0x020000000002}
	x.remember(a, offer{isp: isp, at: t0})
	x.expireOffers(stepWall(t, t0.Add(time.Minute), time.Hour))
	if _, ok := x.offered[a]; !ok {
		t.Fatal("the wall clock stepped an hour forward: an OFFER a minute old forgotten")
	}
	// Back an hour after the first: b, remembered then, reads an hour
	// earlier on the wall clock than a.
	x.remember(b, offer{isp: isp, at: stepWall(t, t0.Add(time.Second), -time.Hour)})
	x.expireOffers(stepWall(t, t0.Add(offerMemory+time.Second), -time.Hour))
	if len(x.offered) != 0 {
		t.Fatalf("the wall clock stepped an hour back: %d OFFERs offerMemory old kept, want none", len(x.offered))
	}
}

// TestLeaseEndClockStep: a binding's lease, granted by an ACK of the
// running ispmux, ends a lease time after it by the monotonic clock, as
// its client and its ISP's server count it, whatever the wall clock's
// steps: stepped an hour forward a minute after the ACK, the lease
// (ten minutes left) is neither due to the expiry scan, nor ended for
// the message path, nor past its T2; stepped an hour back eleven minutes
// after, it is all three, and a local renewal's lease time is what is
// left of the ISP's (none), not an hour more. A binding read from the
// store (no monotonic reading) is counted by its wall clock end.
func TestLeaseEndClockStep(t *testing.T) {
	t0 := time.Now()
	isp := &ISP{Name: "alpha"}
	// Granted ten minutes ago for twenty: T1 now, T2 at 7.5 minutes.
	b := subscribers.Binding{IP: netip.MustParseAddr("100.64.0.10"), Expires: t0.Add(10 * time.Minute),
		Updated: t0.Add(-10 * time.Minute), LeaseTime: 20 * time.Minute}
	l := leaseOf(&b, isp)
	sk := burstSub(1)
	lt := &leaseTable{}
	lt.init()
	lt.put(sk, l)

	fwd := stepWall(t, t0.Add(time.Minute), time.Hour)
	if n := len(lt.expired(fwd, 1<<10)); n != 0 {
		t.Errorf("the wall clock stepped an hour forward: %d leases due to the expiry scan with nine minutes left, want none", n)
	}
	if !l.endsAfter(fwd) {
		t.Error("the wall clock stepped an hour forward: a lease with nine minutes left ended for the message path")
	}
	if l.pastRebind(fwd) {
		t.Error("the wall clock stepped an hour forward: a lease a minute past its T1 is past its T2")
	}
	if left := time.Duration(l.expires - leaseNanos(fwd)); left != 9*time.Minute {
		t.Errorf("the wall clock stepped an hour forward: a local renewal would give %v of the lease, want 9m0s", left)
	}

	back := stepWall(t, t0.Add(11*time.Minute), -time.Hour)
	if n := len(lt.expired(back, 1<<10)); n != 1 {
		t.Errorf("the wall clock stepped an hour back: %d leases due to the expiry scan a minute past their end, want 1", n)
	}
	if l.endsAfter(back) {
		t.Error("the wall clock stepped an hour back: a lease a minute past its end still held for the message path")
	}
	if !l.pastRebind(back) {
		t.Error("the wall clock stepped an hour back: a lease a minute past its end is not past its T2")
	}
	if left := time.Duration(l.expires - leaseNanos(back)); left > 0 {
		t.Errorf("the wall clock stepped an hour back: a local renewal would give %v past the ISP's lease, want none", left)
	}

	// Read from the store: its wall clock end.
	stored := b
	stored.Expires = b.Expires.Round(0)
	if ls := leaseOf(&stored, isp); ls.expires != stored.Expires.UnixNano() {
		t.Errorf("a stored binding's end on the lease clock is %d, want its wall clock end %d", ls.expires, stored.Expires.UnixNano())
	}
}

// TestRestoredOnboardingLeaseClockStep: an onboarding lease read from the
// store at the start (its end without a monotonic reading) runs out by
// the monotonic clock once in the table, as one granted while running
// does: stepped an hour forward, it is not due with nine minutes left;
// stepped an hour back, it is due a minute past its end.
func TestRestoredOnboardingLeaseClockStep(t *testing.T) {
	var tbl onboardingTable
	circuits := []Circuit{{Name: "a", Port: 0, Addr: netip.MustParseAddr("100.64.0.1"),
		Onboarding: &Onboarding{Pool: netip.MustParsePrefix("100.65.1.0/29")}}}
	tbl.init(circuits, slog.New(slog.DiscardHandler))
	pl := tbl.pools[circuitKey{0, 0}]
	t0 := time.Now()
	const mac = 0x027700000001
	stored := t0.Add(10 * time.Minute).Round(0) // as decoded from the store
	tbl.put(mac, pl, netip.MustParseAddr("100.65.1.2"), t0.Add(-time.Minute).Round(0), stored)
	if l, ok := tbl.leaseOf(mac); !ok || !l.expires.Equal(stored) {
		t.Fatalf("restored lease %+v %v, want its end %v", l, ok, stored)
	}
	if due := tbl.due(stepWall(t, t0.Add(time.Minute), time.Hour)); len(due) != 0 {
		t.Errorf("the wall clock stepped an hour forward: %d restored onboarding leases due with nine minutes left, want none", len(due))
	}
	if due := tbl.due(stepWall(t, t0.Add(11*time.Minute), -time.Hour)); len(due) != 1 {
		t.Errorf("the wall clock stepped an hour back: %d restored onboarding leases due a minute past their end, want 1", len(due))
	}
}
