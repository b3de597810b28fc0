package portal

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestSuspendedDeviceChoosesAnother: a device in the walled garden for its
// customer's suspension (Subscriber.Suspended) is told so, with its ISP's
// name, and offered the form to choose another provider; it chose nothing
// (not the handover's progress page). Its claim at another ISP is made as
// any device's.
func TestSuspendedDeviceChoosesAnother(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Suspended: "alpha", Expires: time.Now().Add(90 * time.Second)})
	w := r.do(req{target: "/", from: addrA})
	b := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(b, "Your service is suspended") ||
		!strings.Contains(b, "Your service with Alpha Net is suspended: Alpha Net can tell you why, and restore it.") ||
		!strings.Contains(b, "<form") || strings.Contains(b, "refresh") {
		t.Fatalf("page of a suspended customer's device: %d %s", w.Code, b)
	}
	c, tok := r.open(addrA)
	w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-9", "right-pass"), cookie: c, hdr: sameOrigin})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("claim at another ISP: %d %s", w.Code, w.Body)
	}
	if got := r.cl.calls(); len(got) != 1 || got[0].ISP != "beta" {
		t.Errorf("claims %+v, want one at beta", got)
	}
}
