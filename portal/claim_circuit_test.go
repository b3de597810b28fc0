package portal

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// TestClaimCarriesCircuit: a claim carries the circuit the device is on
// (Subscriber.Circuit), its access entry's if the directory gave none:
// the claim limits count new claimants per circuit.
func TestClaimCarriesCircuit(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Circuit: "eth1/7", Addr: addrA, Expires: time.Now().Add(90 * time.Second)})
	for _, a := range []netip.Addr{addrA, addrB} {
		c, tok := r.open(a)
		if w := r.do(req{method: http.MethodPost, target: "/claim", from: a, form: claimForm(tok, "beta", "c-1", "pw"), cookie: c, hdr: sameOrigin}); w.Code != http.StatusSeeOther {
			t.Fatalf("claim from %v: %d %s", a, w.Code, w.Body)
		}
	}
	got := r.cl.calls()
	if len(got) != 2 || got[0].Circuit != "eth1/7" || got[1].Circuit != "access port2" {
		t.Errorf("claims %+v, want circuits eth1/7 and access port2", got)
	}
}

// TestClaimCircuitNoLockout: a guesser on one circuit of the walled
// garden rotates made-up MACs against a customer ID until the claim
// limits refuse them; the owner's device on another circuit then claims
// (before, the guesser had spent the customer's new-claimant tokens for
// every circuit: 429).
func TestClaimCircuitNoLockout(t *testing.T) {
	ten := newTenants(t, tenants.ClaimLimits{BackoffBase: time.Hour, BackoffMax: time.Hour,
		PerCircuitNewBurst: 2, PerCircuitNewEvery: time.Hour, PerCustomerNewBurst: 6, PerCustomerNewEvery: time.Hour})
	r := newRig(t, ten)
	post := func(mac uint64, access, circuit string, addr netip.Addr, pw string) int {
		r.dir.set(Subscriber{MAC: mac, Access: access, Circuit: circuit, Addr: addr, Expires: time.Now().Add(90 * time.Second)})
		c, tok := r.open(addr)
		return r.do(req{method: http.MethodPost, target: "/claim", from: addr, form: claimForm(tok, "beta", "c-1", pw), cookie: c, hdr: sameOrigin}).Code
	}
	codes := map[int]int{}
	for i := range 10 {
		codes[post(0x02_00_00_00_0e_00+uint64(i), "port1", "eth1/1", addrA, "guess")]++
	}
	if codes[http.StatusForbidden] != 2 || codes[http.StatusTooManyRequests] != 8 {
		t.Errorf("10 made-up MACs on one circuit: %v, want 2 checked (its tokens), 8 refused", codes)
	}
	if code := post(macB, "port2", "eth2/1", addrB, "right-pass-c-1"); code != http.StatusSeeOther {
		t.Errorf("the owner's device on another circuit: %d, want claimed (303)", code)
	}
	if code := post(0x02_00_00_00_0e_ff, "port1", "eth1/1", addrA, "right-pass-c-1"); code != http.StatusTooManyRequests {
		t.Errorf("a new device on the guesser's circuit: %d, want 429 (its circuit's tokens spent)", code)
	}
}
