package dhcpproxy

import (
	"testing"
	"time"
	"unsafe"
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
