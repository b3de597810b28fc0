package e2e

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// TestSuspendedChoosesAnotherISP: a subscriber whose ISP suspends it is
// not locked in (dhclient, real Kea). s8, on alpha (claimed on the portal),
// is suspended by alpha through the API: its binding ends and its next
// renewal, NAKed, leads it into the walled garden, where the portal says
// its service with Alpha Broadband is suspended and offers the others. It
// signs up with beta there and moves to beta by itself. Before, a
// suspended customer's device got silence and NAKs, with no garden and no
// portal: no way to choose another ISP.
func TestSuspendedChoosesAnotherISP(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 8, DHCP: true, API: true, Portal: true, Unconfigured: []string{"s8"},
		KeaKnown: map[string][]string{"alpha": {"p-alpha"}, "beta": {"p-beta"}}})
	r.start()
	ctx := context.Background()
	alpha := r.apiAs(r.topo.API.ISP["alpha"])
	beta := r.apiAs(r.topo.API.ISP["beta"])
	if _, err := alpha.CreateCustomer(ctx, "alpha", tenants.CustomerInput{ID: "p-alpha", Password: "pw-p-alpha"}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "p-beta", Password: "pw-p-beta"}); err != nil {
		t.Fatal(err)
	}
	s8 := r.sub("s8")
	_, c, tok := r.gardenPortal(ctx, s8)
	if resp, body, err := portalClaim(c, tok, "alpha", "p-alpha", "pw-p-alpha", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("claim at alpha: %v %v\n%s", resp, err, body)
	}
	if !eventually(60*time.Second, func() bool { return r.handoverDone(s8, "alpha") }) {
		t.Fatalf("s8 not on alpha after its claim; ispmux log:\n%s", r.log.String())
	}

	// alpha suspends it: into the garden at its next renewal.
	st := tenants.StatusSuspended
	if _, err := alpha.UpdateCustomer(ctx, "alpha", "p-alpha", tenants.CustomerPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	pool := netip.MustParsePrefix(lab.OnboardingPool)
	inGarden := func() bool {
		a, ok := r.topo.SubAddr(ctx, s8)
		o, held := r.onboarding(s8.MAC)
		return ok && pool.Contains(a.Addr()) && held && o.IP == a.Addr().String()
	}
	if !eventually(90*time.Second, inGarden) {
		a, ok := r.topo.SubAddr(ctx, s8)
		t.Fatalf("s8 not in the walled garden after alpha suspended it: address %v %v; ispmux log:\n%s", a, ok, r.log.String())
	}
	if n := r.counterNow("suspended_onboarding"); n == 0 {
		t.Error("suspended_onboarding not counted")
	}
	// Its address in the garden is another: the connections of its
	// first visit are gone with the one it had then.
	c.CloseIdleConnections()
	page, tok, err := portalPage(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Your service with Alpha Broadband is suspended"; !strings.Contains(page, want) {
		t.Errorf("the portal's page for s8, suspended, lacks %q:\n%s", want, page)
	}
	if resp, body, err := portalClaim(c, tok, "beta", "p-beta", "pw-p-beta", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("claim at beta: %v %v\n%s", resp, err, body)
	}
	if !eventually(90*time.Second, func() bool { return r.handoverDone(s8, "beta") }) {
		o, ok := r.onboarding(s8.MAC)
		t.Fatalf("s8 not on beta after its claim there: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
}
