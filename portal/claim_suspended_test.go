package portal

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/tenants"
)

// A claim on the portal with the right password of a suspended customer:
// the DHCP proxy gives a suspended customer's device silence and NAKs
// (docs/ARCHITECTURE.md, Onboarding: "the ISP suspended it; the operator
// or the ISP lifts it, not the portal"), so the device, once attached,
// leaves the walled garden (or its current ISP, for a move) for no
// service, while the portal tells the subscriber it "will switch to Beta
// within about 40 seconds". It attached it and said so; the claim is
// refused now (409, claim-refused "customer suspended"), after the
// password check so that the status tells a guesser nothing.
func TestClaimSuspendedCustomer(t *testing.T) {
	ten := newTenants(t, tenants.DefaultClaimLimits)
	ctx := context.Background()
	st := tenants.StatusSuspended
	if _, err := ten.UpdateCustomer(ctx, tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}, "beta", "c-1", tenants.CustomerPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ten)
	c, tok := r.open(addrA)
	w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-1", "right-pass-c-1"), cookie: c, hdr: sameOrigin})
	if w.Code == http.StatusSeeOther {
		t.Errorf("claim into a suspended customer answered %d (Location %s): success", w.Code, w.Header().Get("Location"))
		if w := r.do(req{target: "/done", from: addrA}); strings.Contains(w.Body.String(), "will switch to Beta") {
			t.Logf("/done says: %s", strings.TrimSpace(w.Body.String()[strings.Index(w.Body.String(), "<p>"):]))
		}
	}
	if d, err := ten.Device(ctx, "beta", "02:00:00:00:00:0a"); err == nil {
		t.Errorf("device attached to the suspended customer: %+v", d)
	}
}
