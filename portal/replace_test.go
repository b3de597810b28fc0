package portal

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/tenants"
)

// TestClaimReplacesDeviceAtLimit: a claim with the right password of a
// customer at its device limit offers the customer's devices, to replace
// one by this device (an installer's claim could; the portal only said
// "ask your ISP to remove one"); the claim with the one chosen attaches
// this device and detaches that one. A wrong password shows no device.
func TestClaimReplacesDeviceAtLimit(t *testing.T) {
	ten := newTenants(t, tenants.DefaultClaimLimits)
	ctx := context.Background()
	op := tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}
	const old = "02:00:00:00:00:77"
	if _, err := ten.AttachDevice(ctx, op, "beta", tenants.DeviceInput{MAC: old, CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ten)
	c, tok := r.open(addrA)
	w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-1", "wrong-pass"), cookie: c, hdr: sameOrigin})
	if strings.Contains(w.Body.String(), old) {
		t.Fatalf("a wrong password showed the customer's devices: %d %s", w.Code, w.Body)
	}
	w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-1", "right-pass-c-1"), cookie: c, hdr: sameOrigin})
	b := w.Body.String()
	if w.Code != http.StatusConflict || !strings.Contains(b, `name="replace" value="`+old+`"`) || !strings.Contains(b, "choose a device it replaces") {
		t.Fatalf("claim at the device limit: %d %s", w.Code, b)
	}
	if !strings.Contains(b, `name="replace_for" value="beta c-1"`) {
		t.Errorf("the replace choice is not tied to its customer: %s", b)
	}
	// The error summary leads to the choice, which must be made (it led
	// to the password, and a form sent without a choice was the same 409
	// again: a portal trial).
	if !strings.Contains(b, `<a href="#replace-0">`) || !strings.Contains(b, `value="`+old+`" required>`) {
		t.Errorf("the choice is not linked from the summary or not required: %s", b)
	}
	// Chosen, but the customer ID corrected meanwhile: not this claim's.
	f := claimForm(tok, "beta", "c-2", "right-pass-c-2")
	f.Set("replace", old)
	f.Set("replace_for", "beta c-1")
	if got := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: f, cookie: c, hdr: sameOrigin}); got.Code != http.StatusSeeOther {
		t.Fatalf("claim at c-2 with c-1's replace choice: %d %s", got.Code, got.Body)
	}
	if d, err := ten.Device(ctx, "beta", old); err != nil || d.CustomerID != "c-1" {
		t.Fatalf("c-1's device after a claim at c-2: %+v %v; want it kept", d, err)
	}
	if err := ten.DetachDevice(ctx, op, "beta", "02:00:00:00:00:0a"); err != nil {
		t.Fatal(err)
	}
	f = claimForm(tok, "beta", "c-1", "right-pass-c-1")
	f.Set("replace", old)
	f.Set("replace_for", "beta c-1")
	w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: f, cookie: c, hdr: sameOrigin})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("claim replacing %s: %d %s", old, w.Code, w.Body)
	}
	devs, err := ten.Devices(ctx, "beta", "c-1", tenants.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs.Items) != 1 || devs.Items[0].MAC != "02:00:00:00:00:0a" {
		t.Errorf("c-1's devices after the replace: %+v, want this device alone", devs.Items)
	}
}
