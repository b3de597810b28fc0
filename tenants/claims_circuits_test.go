package tenants

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// newLimitedTenants is Tenants for ISP alpha alone over a fresh store,
// with the claim limits lim and one customer, victim, whose password is
// right-password.
func newLimitedTenants(t *testing.T, lim ClaimLimits) *Tenants {
	t.Helper()
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 100, Claim: lim}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "victim", Password: "right-password", DeviceLimit: 10}); err != nil {
		t.Fatal(err)
	}
	return ten
}

// circuitLimits are small claim limits for the tests: nothing comes back
// within a test (an hour), a circuit has 3 new-claimant tokens for a
// customer, the customer 9.
var circuitLimits = ClaimLimits{BackoffBase: time.Hour, BackoffMax: time.Hour,
	PerCircuitNewBurst: 3, PerCircuitNewEvery: time.Hour, PerCustomerNewBurst: 9, PerCustomerNewEvery: time.Hour}

// portalClaim is a claim of victim on the portal from mac on circuit.
func portalClaim(ten *Tenants, pw, mac, circuit string) error {
	_, err := ten.Claim(ctx, Actor{Kind: ActorPortal, Name: "portal"}, ClaimRequest{ISP: "alpha", CustomerID: "victim", Password: pw, MAC: mac, Circuit: circuit})
	return err
}

// rotate has a guesser on circuit try victim's password from n made-up
// MACs, twice each, and returns how many of its guesses were checked.
func rotate(t *testing.T, ten *Tenants, circuit string, n int) int {
	t.Helper()
	verified := 0
	for i := range n {
		mac := fmt.Sprintf("02:00:00:%02x:0e:%02x", len(circuit), i)
		for range 2 {
			switch err := portalClaim(ten, "guess", mac, circuit); {
			case errors.Is(err, ErrBadCredentials):
				verified++
			case !errors.Is(err, ErrRateLimited):
				t.Fatalf("guess from %s on %s: %v", mac, circuit, err)
			}
		}
	}
	return verified
}

// TestClaimCircuitsNoLockout: a guesser in the walled garden on circuit
// A who knows the customer ID rotates made-up MACs. Before, every new
// claimant took one of the customer's new-claimant tokens, wherever it
// was: once the guesser had spent them, the owner's device, a new
// claimant too, was refused (429) on any circuit for as long as the
// guesser made up one MAC a refill. The made-up MACs spend circuit A's
// tokens now: the owner's device on circuit B claims; a claim token,
// its own circuit, too.
func TestClaimCircuitsNoLockout(t *testing.T) {
	ten := newLimitedTenants(t, circuitLimits)
	if v := rotate(t, ten, "eth1/10", 20); v != 3 {
		t.Errorf("20 MACs on one circuit, 2 guesses each: %d checked, want its 3 new-claimant tokens", v)
	}
	if err := portalClaim(ten, "right-password", "02:00:00:00:0b:01", "eth1/20"); err != nil {
		t.Errorf("the owner's device on its own circuit, the guesser's spent: %v, want claimed", err)
	}
	installer := Actor{Kind: ActorClaim, Name: "installer"}
	if _, err := ten.Claim(ctx, installer, ClaimRequest{ISP: "alpha", CustomerID: "victim", Password: "right-password", MAC: "02:00:00:00:0b:02"}); err != nil {
		t.Errorf("an installer's claim, the guesser's circuit spent: %v, want claimed", err)
	}
	// The guesser's circuit stays spent: a device there is refused, the
	// owner's as well (a shared access is one circuit: documented).
	if err := portalClaim(ten, "right-password", "02:00:00:00:0b:03", "eth1/10"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("a new device on the guesser's circuit: %v, want rate-limited", err)
	}
}

// TestClaimCircuitsSameCircuitLocks: the guesser on the owner's own
// circuit (an access shared by several subscribers) still keeps the
// owner's devices there out, as before: its made-up MACs are new
// claimants on that circuit like the owner's (documented in ClaimLimits).
// The operator's claim is not limited.
func TestClaimCircuitsSameCircuitLocks(t *testing.T) {
	ten := newLimitedTenants(t, circuitLimits)
	rotate(t, ten, "eth1/20", 20)
	if err := portalClaim(ten, "right-password", "02:00:00:00:0b:01", "eth1/20"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("the owner's device on the guesser's circuit: %v, want rate-limited (documented)", err)
	}
	if _, err := ten.Claim(ctx, op, ClaimRequest{ISP: "alpha", CustomerID: "victim", Password: "right-password", MAC: "02:00:00:00:0b:01"}); err != nil {
		t.Errorf("the operator's claim: %v", err)
	}
}

// TestClaimCircuitsManyCircuitsBounded: a guesser with many circuits gets
// a circuit's new-claimant tokens on each only while the customer's last:
// 9 guesses in all here, not 3 a circuit (the per-circuit tokens alone
// would let one with enough circuits guess without bound). Having spent
// the customer's, it keeps the owner's circuit out too (the tokens come
// back faster than one circuit's: documented).
func TestClaimCircuitsManyCircuitsBounded(t *testing.T) {
	ten := newLimitedTenants(t, circuitLimits)
	verified := 0
	for c := range 10 {
		verified += rotate(t, ten, fmt.Sprintf("eth%d/10", c), 5)
	}
	if verified != circuitLimits.PerCustomerNewBurst {
		t.Errorf("10 circuits × 5 MACs × 2 guesses: %d checked, want the customer's %d new-claimant tokens", verified, circuitLimits.PerCustomerNewBurst)
	}
	if err := portalClaim(ten, "right-password", "02:00:00:00:0b:01", "eth1/20"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("the owner's device after 10 circuits spent the customer's tokens: %v, want rate-limited", err)
	}
}

// TestClaimCircuitsOwnerMAC: a guesser on another circuit using the MAC
// of the owner's device fails for the customer and sprays other customer
// IDs until that MAC's buckets are spent. Before, the claimant was the
// MAC alone: the owner's device was a failer held by the guesser's
// back-off (an hour here), its spray bucket empty. The claimant is the
// MAC on its circuit now (as the DHCP proxy keys a subscriber): the
// owner's device claims.
func TestClaimCircuitsOwnerMAC(t *testing.T) {
	ten := newLimitedTenants(t, ClaimLimits{BackoffBase: time.Hour, BackoffMax: time.Hour})
	const owner = "02:00:00:00:0b:01"
	for i := range ownTries + 1 {
		if err := portalClaim(ten, fmt.Sprint("guess-", i), owner, "eth1/10"); !errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrRateLimited) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	portal := Actor{Kind: ActorPortal, Name: "portal"}
	for i := range 2 * DefaultClaimLimits.PerMACBurst {
		_, _ = ten.Claim(ctx, portal, ClaimRequest{ISP: "alpha", CustomerID: fmt.Sprint("sprayed-", i), Password: "x", MAC: owner, Circuit: "eth1/10"})
	}
	if err := portalClaim(ten, "right-password", owner, "eth1/20"); err != nil {
		t.Errorf("the owner's device on its circuit, its MAC guessing on another: %v, want claimed", err)
	}
}

// TestClaimCircuitAPIIgnored: ClaimRequest.Circuit is the portal's: an
// API claimant naming circuits is still one claimant on one circuit (its
// token), which cannot spend a portal circuit's tokens (nor, a new
// circuit each time, get fresh ones).
func TestClaimCircuitAPIIgnored(t *testing.T) {
	ten := newLimitedTenants(t, circuitLimits)
	installer := Actor{Kind: ActorClaim, Name: "installer"}
	verified := 0
	for i := range 10 {
		_, err := ten.Claim(ctx, installer, ClaimRequest{ISP: "alpha", CustomerID: "victim", Password: "guess",
			MAC: fmt.Sprintf("02:00:00:00:0f:%02x", i), Circuit: fmt.Sprintf("eth1/%d", 20+i)})
		if errors.Is(err, ErrBadCredentials) {
			verified++
		}
	}
	if verified != ownTries {
		t.Errorf("a claim token naming 10 circuits: %d guesses checked, want its %d (one claimant)", verified, ownTries)
	}
	if err := portalClaim(ten, "right-password", "02:00:00:00:0b:01", "eth1/20"); err != nil {
		t.Errorf("the owner's device on a circuit the token named: %v, want claimed", err)
	}
}

// TestClaimLimiterCircuitsDefaults plays a day of guessing against the
// default limits (the limiter alone, its clock simulated): a guesser on
// one circuit trying a made-up MAC every 30 s, the owner trying a new
// device once an hour. On another circuit than the guesser's the owner
// always gets in (before: never, after the first hour); on the same
// circuit it is kept out (documented); a guesser on two circuits leaves
// the owner's in; one on many is bounded by the customer's tokens.
func TestClaimLimiterCircuitsDefaults(t *testing.T) {
	type result struct{ guesses, ownerIn, ownerOut int }
	play := func(guessers []string, ownerOn string, d time.Duration) result {
		l := newClaimLimiter(DefaultClaimLimits)
		var r result
		start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; ; i++ {
			now := start.Add(time.Duration(i) * 30 * time.Second)
			if now.Sub(start) >= d {
				return r
			}
			on := "circuit " + guessers[i%len(guessers)]
			who := fmt.Sprintf("mac %d on %s", i, on)
			if l.allow("alpha", "victim", who, on, now) == nil {
				r.guesses++
				l.result("alpha", "victim", who, on, false, now)
			}
			if i%120 == 60 { // the owner, every hour on the half hour
				on := "circuit " + ownerOn
				who := fmt.Sprintf("mac owner-%d on %s", i, on)
				if l.allow("alpha", "victim", who, on, now) != nil {
					r.ownerOut++
					continue
				}
				r.ownerIn++
				l.result("alpha", "victim", who, on, true, now)
			}
		}
	}
	day := 24 * time.Hour
	if r := play([]string{"A"}, "B", day); r.ownerOut != 0 {
		t.Errorf("a guesser on circuit A, the owner on B: %+v, want the owner always in", r)
	} else if want := DefaultClaimLimits.PerCircuitNewBurst + int(day/DefaultClaimLimits.PerCircuitNewEvery); r.guesses > want {
		t.Errorf("a guesser on one circuit, a day: %d guesses, want at most %d", r.guesses, want)
	}
	if r := play([]string{"A"}, "A", day); r.ownerOut < 23 {
		t.Errorf("a guesser on the owner's circuit: %+v, want the owner kept out (documented)", r)
	}
	if r := play([]string{"A", "C"}, "B", day); r.ownerOut != 0 {
		t.Errorf("a guesser on circuits A and C, the owner on B: %+v, want the owner always in", r)
	}
	circuits := make([]string, 50)
	for i := range circuits {
		circuits[i] = fmt.Sprint("X", i)
	}
	r := play(circuits, "B", day)
	if want := DefaultClaimLimits.PerCustomerNewBurst + int(day/DefaultClaimLimits.PerCustomerNewEvery); r.guesses > want {
		t.Errorf("a guesser on 50 circuits, a day: %d guesses, want at most the customer's %d", r.guesses, want)
	}
	t.Logf("50 circuits: %+v", r)
}

// TestClaimLimiterForgets: the limiter's state stays bounded by the
// recent attempts: after guessing from many MACs on many circuits against
// many customers, an attempt once everything has come back leaves only
// its own state (the per-circuit buckets are forgotten too, once full
// again).
func TestClaimLimiterForgets(t *testing.T) {
	l := newClaimLimiter(DefaultClaimLimits)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		now = now.Add(time.Second)
		on := fmt.Sprint("circuit X", i%50)
		who, cust := fmt.Sprintf("mac %d on %s", i, on), fmt.Sprint("c-", i%20)
		if l.allow("alpha", cust, who, on, now) == nil {
			l.result("alpha", cust, who, on, false, now)
		}
	}
	if len(l.circ) < 50 {
		t.Fatalf("%d circuit buckets after guessing on 50 circuits", len(l.circ))
	}
	now = now.Add(2 * time.Hour)
	if err := l.allow("alpha", "owner", "mac 1 on circuit B", "circuit B", now); err != nil {
		t.Fatal(err)
	}
	l.result("alpha", "owner", "mac 1 on circuit B", "circuit B", true, now)
	if len(l.pair) != 1 || len(l.cust) != 1 || len(l.circ) != 1 || len(l.mac) != 1 {
		t.Errorf("state two hours later: %d pairs, %d customers, %d circuit buckets, %d claimants; want 1 each (the last attempt's)",
			len(l.pair), len(l.cust), len(l.circ), len(l.mac))
	}
}

// A claimant spraying customer IDs past its own bucket is refused without
// a hash, and its refused attempts store no circuit bucket: one was kept,
// full, for an hour per customer ID sprayed (a review: 200k refused
// sprays, 43 MiB kept). Only attempts allowed store one.
func TestClaimRefusedSprayStoresNoCircuitBucket(t *testing.T) {
	l := newClaimLimiter(DefaultClaimLimits)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const who, on = "mac 02:00:00:00:0e:01 on eth1/10", "circuit eth1/10"
	allowed := 0
	for i := range 5000 {
		now = now.Add(time.Millisecond)
		cust := fmt.Sprintf("c-%d", i)
		if err := l.allow("alpha", cust, who, on, now); err == nil {
			allowed++
			l.result("alpha", cust, who, on, false, now)
		}
	}
	if allowed == 0 || allowed > DefaultClaimLimits.PerMACBurst {
		t.Fatalf("%d of 5000 sprayed attempts allowed, want 1..%d (the claimant's bucket)", allowed, DefaultClaimLimits.PerMACBurst)
	}
	if len(l.circ) != allowed {
		t.Errorf("%d circuit buckets after %d attempts allowed of 5000: refused ones store buckets", len(l.circ), allowed)
	}
}
