package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// A device claimed on the portal for a customer its ISP registered in
// ispmux's API but not in its own DHCP server (beta's Kea knows p-known
// only): its handover to beta goes unanswered, so it goes back to the
// walled garden (dhclient, real Kea) instead of staying without an
// address; the portal says beta did not answer and that it retries; the
// operator sees it in ctl status, the counters and the events. Once beta
// fixes its side (the device attached to the customer its Kea knows), the
// device moves to beta by itself. Before, the device had no address after
// the claim, for as long as beta was not fixed.
func TestOnboardingHandoverUnanswered(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 8, DHCP: true, API: true, Portal: true, Unconfigured: []string{"s8"},
		KeaKnown: map[string][]string{"beta": {"p-known"}}})
	r.start()
	ctx := context.Background()
	beta := r.apiAs(r.topo.API.ISP["beta"])
	for _, id := range []string{"p-known", "p-unknown"} {
		if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: id, Password: "pw-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	s8 := r.sub("s8")
	s8c, c, tok := r.gardenPortal(ctx, s8)
	if resp, body, err := portalClaim(c, tok, "beta", "p-unknown", "pw-p-unknown", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("claim: %v %v\n%s", resp, err, body)
	}

	// The handover (T1, 10 s), beta silent for one onboarding lease time
	// (20 s), the next DISCOVER of dhclient's back-off: the garden again.
	if !eventually(90*time.Second, func() bool { return r.backInGarden(s8, "beta") }) {
		o, ok := r.onboarding(s8.MAC)
		t.Fatalf("s8 not back in the walled garden after beta's silence: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	// Up to a retry cycle (a garden lease of 20 s, then the handover
	// again and beta's silence for a lease time): a request sent while
	// the retry has the device off the garden waits out the client's 10 s
	// timeout, so the window must hold more than one attempt.
	if page, ok := waitDonePage(c, 60*time.Second, "did not answer when this device asked it for service"); !ok {
		t.Errorf("the portal's page for s8 back in the garden:\n%s", page)
	}
	if n := r.counterNow("handover_failed_unanswered"); n == 0 {
		t.Error("handover_failed_unanswered not counted")
	}
	garden, timeout := false, false
	for _, e := range r.events() {
		garden = garden || e.Kind == "onboarded" && e.MAC == s8.MAC && strings.Contains(e.Reason, "back in the walled garden")
		timeout = timeout || e.Kind == "timeout" && e.MAC == s8.MAC && e.ISP == "beta"
	}
	if !garden || !timeout {
		t.Errorf("events: onboarded back in the garden %v, beta's timeout %v", garden, timeout)
	}

	// A restart while s8 is back in the garden keeps its failure (its
	// reason lost: "failed"), with its retry: dhclient stopped first, so
	// that its garden lease is the one in the store at the start, not a
	// retry under way. Before, the failure was forgotten: the device was
	// handed over again at its next message and its page said it would
	// switch.
	if o, ok := r.onboarding(s8.MAC); !ok || o.HandoverFailed == "" {
		t.Logf("s8 not back in the garden at the restart (a retry under way): %+v %v", o, ok)
	} else {
		killClient(s8c)
		r.stop()
		r.start()
		if o, ok := r.onboarding(s8.MAC); !ok || o.HandoverFailed != "failed" || o.HandoverRetry == "" || o.Chosen != "beta" {
			t.Errorf("s8 after the restart: onboarding %+v %v; want its failed handover to beta, its retry", o, ok)
		}
		if n := r.counterNow("handover_failure_restored"); n != 1 {
			t.Errorf("handover_failure_restored %d after the restart, want 1", n)
		}
		if page, ok := waitDonePage(c, 30*time.Second, "Beta Telecom has not taken it"); !ok {
			t.Errorf("the portal's page for s8 after the restart:\n%s", page)
		}
		startClient(t, r.topo.Dhclient(ctx, s8))
	}

	// beta fixes its side: the device is its known customer's now. It
	// moves to beta at its next renewal in the garden, by itself.
	if err := beta.DetachDevice(ctx, "beta", s8.MAC); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.AttachDevice(ctx, "beta", tenants.DeviceInput{MAC: s8.MAC, CustomerID: "p-known"}); err != nil {
		t.Fatal(err)
	}
	if !eventually(60*time.Second, func() bool { return r.handoverDone(s8, "beta") }) {
		o, ok := r.onboarding(s8.MAC)
		t.Fatalf("s8 not on beta after the fix: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	if _, ok := r.onboarding(s8.MAC); ok {
		t.Error("s8 still has an onboarding lease")
	}
}

// The same device, back in the walled garden after beta left its
// handover unanswered (the user typed a customer ID beta's Kea does not
// know), is offered the claim form on the failure page; the user claims
// again there with the right customer ID. The portal then shows the new
// claim switching, not the old failure, and the device moves to beta at
// its next renewal in the garden (T1, 10 s), not a retry's time later.
// First the user signs in again with the same customer ID (as after
// phoning beta): that asks for the retry at once, the portal shows the
// device switching, not the failure, until the retry fails again.
func TestOnboardingHandoverReclaim(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 8, DHCP: true, API: true, Portal: true, Unconfigured: []string{"s8"},
		KeaKnown: map[string][]string{"beta": {"p-known"}}})
	r.start()
	ctx := context.Background()
	beta := r.apiAs(r.topo.API.ISP["beta"])
	for _, id := range []string{"p-known", "p-unknown"} {
		if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: id, Password: "pw-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	s8 := r.sub("s8")
	_, c, tok := r.gardenPortal(ctx, s8)
	if resp, body, err := portalClaim(c, tok, "beta", "p-unknown", "pw-p-unknown", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("claim: %v %v\n%s", resp, err, body)
	}
	if !eventually(90*time.Second, func() bool { return r.backInGarden(s8, "") }) {
		o, ok := r.onboarding(s8.MAC)
		t.Fatalf("s8 not back in the walled garden after beta's silence: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	var page string
	var err error
	if !eventually(60*time.Second, func() bool { // a retry cycle: see TestOnboardingHandoverUnanswered
		page, tok, err = portalPage(c)
		return err == nil && strings.Contains(page, "did not answer when this device asked it for service")
	}) {
		t.Fatalf("the failure page with a form for s8: %v\n%s", err, page)
	}
	// It names the customer ID the claim gave, and its form holds it.
	if !strings.Contains(page, "You chose Beta Telecom with customer ID p-unknown") || !strings.Contains(page, `value="p-unknown"`) {
		t.Errorf("the failure page does not name customer ID p-unknown:\n%s", page)
	}
	// The same claim again: the retry asked for, the device switching.
	retries := r.counterNow("handover_retry")
	if resp, body, err := portalClaim(c, tok, "beta", "p-unknown", "pw-p-unknown", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the same claim again from the failure page: %v %v\n%s", resp, err, body)
	}
	resp, err := c.Get("https://" + lab.PortalHostname + "/done")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The page says the device asks beta again, not that it will switch:
	// beta may still not answer. (Unless the retry due a lease time after
	// the failure began between the page's load and the claim: the record
	// was then under way, nothing was left to ask, and the page is the
	// switching one.)
	want := "asks Beta Telecom again for service within"
	if n := r.counterNow("handover_retry_asked"); n == 0 && r.counterNow("handover_retry") > retries {
		want = "will switch to"
	} else if n != 1 {
		t.Errorf("handover_retry_asked %d after the same claim again, want 1", n)
	}
	if !strings.Contains(string(b), want) || strings.Contains(string(b), "did not answer") {
		t.Errorf("/done after the same claim again: %s, want %q\n%s", resp.Status, want, b)
	}
	// Its retry (its next message) and beta's silence again: the failure
	// page is back.
	if !eventually(90*time.Second, func() bool {
		page, tok, err = portalPage(c)
		return err == nil && strings.Contains(page, "did not answer when this device asked it for service") && r.counterNow("handover_retry") > retries
	}) {
		t.Fatalf("the failure page after the asked retry (handover_retry %d, was %d): %v\n%s", r.counterNow("handover_retry"), retries, err, page)
	}
	retries = r.counterNow("handover_retry")
	if resp, body, err := portalClaim(c, tok, "beta", "p-known", "pw-p-known", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("claim again from the failure page: %v %v\n%s", resp, err, body)
	}
	claimed := time.Now()
	resp, err = c.Get("https://" + lab.PortalHostname + "/done")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "will switch to") || strings.Contains(string(b), "did not answer") {
		t.Errorf("/done after the claim again: %s\n%s", resp.Status, b)
	}
	if !eventually(40*time.Second, func() bool { return r.handoverDone(s8, "beta") }) {
		o, ok := r.onboarding(s8.MAC)
		t.Fatalf("s8 not on beta after the claim again: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	if d := time.Since(claimed); d > 25*time.Second {
		t.Errorf("s8 on beta %v after the claim again, want within T1 (10 s) and a DORA", d)
	}
	if n := r.counterNow("handover_retry"); n != retries {
		t.Errorf("handover_retry %d, was %d: the new claim's handover waited for the retry", n, retries)
	}
}
