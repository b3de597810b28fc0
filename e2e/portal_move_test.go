package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// TestPortalMove is issue 10's portal for bound subscribers: the portal's
// public name resolves (through the ISP's resolver) to its address, which
// the datapath hands to the portal; each subscriber is identified in its
// own VRF although addresses overlap; s2, on beta, moves itself to alpha
// in Chromium with alpha's customer ID + password, confirms, and holds
// alpha's address within client_lease_max / 2 + 5 s; beta's Kea has the
// release and beta's moved event does not name alpha; a form posted from
// another origin is refused.
func TestPortalMove(t *testing.T) {
	t.Parallel()
	const clientLease = 30 * time.Second
	// s2 is attached over the API (a device of the configuration is
	// read-only: only the operator's file moves it).
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, API: true, Portal: true, LeaseTime: time.Hour,
		KeaNotAuthoritative: true, KeaKnown: map[string][]string{"alpha": {"a-22"}}, ClientLeaseMax: clientLease,
		Unconfigured: []string{"s2"}})
	r.start()
	ctx := context.Background()
	alpha, beta := r.apiAs(r.topo.API.ISP["alpha"]), r.apiAs(r.topo.API.ISP["beta"])
	if _, err := alpha.CreateCustomer(ctx, "alpha", tenants.CustomerInput{ID: "a-22", Password: "alpha-pass-22"}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "c-s2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.AttachDevice(ctx, "beta", tenants.DeviceInput{MAC: r.sub("s2").MAC, CustomerID: "c-s2"}); err != nil {
		t.Fatal(err)
	}
	s1, s2, s3 := r.sub("s1"), r.sub("s2"), r.sub("s3")
	for _, s := range []lab.Sub{s1, s2, s3} {
		startClient(t, r.topo.Dhclient(ctx, s))
	}
	for _, s := range []lab.Sub{s1, s2, s3} {
		if _, ok := r.waitAddr(s, 20*time.Second); !ok {
			t.Fatalf("%s got no address; ispmux log:\n%s", s.Name, r.log.String())
		}
	}
	a1, _ := r.topo.SubAddr(ctx, s1)
	overlap := ""
	for _, s := range []lab.Sub{s2, s3} {
		if a, _ := r.topo.SubAddr(ctx, s); a.Addr() == a1.Addr() {
			overlap = s.Name
		}
	}
	if overlap == "" {
		t.Fatalf("no beta subscriber shares s1's address %v (the test needs the overlap)", a1)
	}
	t.Logf("s1 (alpha) and %s (beta) both hold %v", overlap, a1.Addr())

	t.Run("each subscriber is identified in its own VRF", func(t *testing.T) {
		for _, c := range []struct {
			s    lab.Sub
			want string
		}{{s1, "Alpha Broadband"}, {r.sub(overlap), "Beta Telecom"}} {
			// A device of the configuration (s1, s3) gets no form: its
			// provider is the operator's to change.
			body, _, err := portalPage(r.portalClient(c.s))
			if body == "" {
				t.Fatalf("%s: %v", c.s.Name, err)
			}
			if !strings.Contains(body, "connected to "+c.want) {
				t.Errorf("%s's portal page does not say it is on %s:\n%s", c.s.Name, c.want, body)
			}
			if fixed := c.s.Name != "s2"; fixed != strings.Contains(body, "cannot be changed on this page") || fixed == (err == nil) {
				t.Errorf("%s (of the configuration: %v): its page offers the move %v:\n%s", c.s.Name, fixed, err == nil, body)
			}
		}
	})

	t.Run("a form posted from another origin is refused", func(t *testing.T) {
		c := r.portalClient(s2)
		_, tok, err := portalPage(c)
		if err != nil {
			t.Fatal(err)
		}
		f := url.Values{"token": {tok}, "isp": {"alpha"}, "customer_id": {"a-22"}}
		req, _ := http.NewRequest(http.MethodPost, "https://"+lab.PortalHostname+"/claim", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin post: %s", resp.Status)
		}
		if b, ok := r.bound(s2.MAC); !ok || b.ISP != "beta" {
			t.Errorf("s2 after the cross-origin post: %+v %v", b, ok)
		}
		if d, err := beta.Device(ctx, "beta", s2.MAC); err != nil || d.CustomerID != "c-s2" {
			t.Errorf("s2's device after the cross-origin post: %+v %v", d, err)
		}
	})

	t.Run("s2 moves itself from beta to alpha in Chromium", func(t *testing.T) {
		if _, ok := r.keaActive("beta", s2.MAC); !ok {
			t.Fatal("s2 has no lease at beta")
		}
		b := r.startBrowser(s2, "", [2]string{lab.PortalHostname, lab.PortalAddr})
		if err := chromedp.Do(b.Ctx, chromedp.Navigate("https://"+lab.PortalHostname+"/"), chromedp.WaitVisible(chromedp.CSS("form"))); err != nil {
			t.Fatalf("portal page: %v\n%s", err, b)
		}
		page, _ := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS("main")))
		if !strings.Contains(page, "Beta Telecom") {
			t.Errorf("s2's page does not name beta:\n%s", page)
		}
		r.screenshot(b, "1-move")
		if err := chromedp.Do(b.Ctx,
			chromedp.Click(chromedp.CSS(`input[name="isp"][value="alpha"]`)),
			chromedp.SendKeys(chromedp.ID("customer_id"), "a-22"),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("password"))); err != nil {
			t.Fatalf("to the confirmation: %v\n%s", err, b)
		}
		confirm, _ := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS("main")))
		if !strings.Contains(confirm, "Beta Telecom") || !strings.Contains(confirm, "Alpha Broadband") {
			t.Errorf("the confirmation does not name both ISPs:\n%s", confirm)
		}
		r.screenshot(b, "2-confirm")
		start := time.Now()
		cctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(cctx,
			chromedp.SendKeys(chromedp.ID("password"), "alpha-pass-22"),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			chromedp.WaitNotPresent(chromedp.ID("password"))); err != nil {
			r.screenshot(b, "3-confirm-failed")
			page, _ := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("confirm: %v; the page:\n%s\nispmux log:\n%s", err, page, r.log.String())
		}
		done, _ := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS("main")))
		if !strings.Contains(done, "Alpha Broadband") {
			t.Errorf("after confirming the page says:\n%s", done)
		}
		r.screenshot(b, "3-moved")
		target := clientLease/2 + 5*time.Second
		if !eventually(target+15*time.Second, func() bool { return r.handoverDone(s2, "alpha") }) {
			t.Fatalf("s2 not on alpha %v after confirming; ispmux log:\n%s", time.Since(start), r.log.String())
		}
		took := time.Since(start)
		t.Logf("confirm → alpha's lease on s2: %v (target %v)", took.Round(10*time.Millisecond), target)
		if took > target {
			t.Errorf("the move took %v, target %v", took, target)
		}
		if l, ok := r.keaActive("alpha", s2.MAC); !ok || string(l.SubscriberID) != "a-22" {
			t.Errorf("alpha's lease for s2: %+v %v", l, ok)
		}
		if !eventually(5*time.Second, func() bool { _, ok := r.keaActive("beta", s2.MAC); return !ok }) {
			t.Error("beta's Kea still holds s2's lease")
		}
		if !r.ping("s2", hostAddr, 3) {
			t.Error("s2 cannot reach alpha's host")
		}
		p, err := beta.Events(ctx, "beta", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		moved := false
		for _, e := range p.Items {
			if e.Kind == "moved" && e.MAC == s2.MAC {
				moved = true
				if strings.Contains(e.Reason, "alpha") || strings.Contains(e.Reason, "a-22") {
					t.Errorf("beta's moved event names the winner: %+v", e)
				}
			}
		}
		if !moved {
			t.Error("no moved event at beta")
		}
	})
}

// A subscriber bound at beta switches itself to alpha on the portal with
// a customer alpha created in ispmux's API but not in its DHCP server
// (alpha's Kea knows a-22 only). alpha stays silent, so the device goes
// to the walled garden (dhclient, real Kea): the portal says alpha did
// not answer and offers the claim form, where the user switches back to
// beta, and the device is on beta again by itself. Before, the device
// sat without an address and without a portal once its beta lease was
// NAKed, for as long as alpha was not fixed, and nothing counted it.
func TestPortalSwitchUnanswered(t *testing.T) {
	t.Parallel()
	r, s2 := switchRig(t)
	r.portalSwitch(s2, "alpha", "a-new", "alpha-pass-new")

	// Its renewal (T1, 15 s) NAKed, its DISCOVERs to alpha unanswered for
	// an onboarding lease time (20 s), its next DISCOVER: the garden.
	// Meanwhile (its beta lease NAKed, no garden lease yet) ctl status
	// lists it among the handovers.
	listed := false
	if !eventually(90*time.Second, func() bool {
		if st, err := r.status(); err == nil {
			for _, h := range st.Handovers {
				listed = listed || h.MAC == s2.MAC && h.ISP == "alpha" && h.CustomerID == "a-new"
			}
		}
		return r.backInGarden(s2, "alpha")
	}) {
		o, ok := r.onboarding(s2.MAC)
		t.Fatalf("s2 not in the walled garden after alpha's silence: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	if !listed {
		t.Error("ctl status never listed s2 among the handovers on its way to alpha")
	}
	if _, ok := r.keaActive("beta", s2.MAC); ok {
		t.Error("beta's Kea still holds s2's lease (no RELEASE at the switch)")
	}
	for _, n := range []string{"switch_held", "handover_failed_unanswered"} {
		if r.counterNow(n) == 0 {
			t.Errorf("%s not counted", n)
		}
	}
	c := r.portalClient(s2) // a garden address now: a new connection
	if page, ok := waitDonePage(c, 60*time.Second, "did not answer when this device asked it for service"); !ok {
		t.Fatalf("the portal's page for s2 in the garden:\n%s", page)
	}

	// Back to beta on the failure page's claim form.
	_, tok, err := portalPage(c)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body, err := portalClaim(c, tok, "beta", "c-s2", "beta-pass-s2", nil); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the claim back to beta: %v %v\n%s", resp, err, body)
	}
	if !eventually(60*time.Second, func() bool { return r.handoverDoneQuiet(s2, "beta") }) {
		o, ok := r.onboarding(s2.MAC)
		t.Fatalf("s2 not back on beta: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
}

// switchRig is the lab of the switch tests: s2 attached at beta (c-s2,
// password beta-pass-s2) and bound there by dhclient; alpha has customer
// a-new (password alpha-pass-new), which alpha's Kea does not know (it
// knows a-22 only); client leases of 30 s.
func switchRig(t *testing.T) (*rig, lab.Sub) {
	t.Helper()
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, API: true, Portal: true, LeaseTime: time.Hour,
		KeaNotAuthoritative: true, KeaKnown: map[string][]string{"alpha": {"a-22"}}, ClientLeaseMax: 30 * time.Second,
		Unconfigured: []string{"s2"}})
	r.start()
	ctx := context.Background()
	alpha, beta := r.apiAs(r.topo.API.ISP["alpha"]), r.apiAs(r.topo.API.ISP["beta"])
	if _, err := alpha.CreateCustomer(ctx, "alpha", tenants.CustomerInput{ID: "a-new", Password: "alpha-pass-new"}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "c-s2", Password: "beta-pass-s2"}); err != nil {
		t.Fatal(err)
	}
	s2 := r.sub("s2")
	if _, err := beta.AttachDevice(ctx, "beta", tenants.DeviceInput{MAC: s2.MAC, CustomerID: "c-s2"}); err != nil {
		t.Fatal(err)
	}
	startClient(t, r.topo.Dhclient(ctx, s2))
	if !eventually(20*time.Second, func() bool { return r.handoverDoneQuiet(s2, "beta") }) {
		t.Fatalf("s2 not bound at beta; ispmux log:\n%s", r.log.String())
	}
	return r, s2
}

// portalSwitch moves the bound subscriber sub to isp's customer on the
// portal, as its pages do it: the customer ID, then the confirmation
// with the password.
func (r *rig) portalSwitch(sub lab.Sub, isp, customer, password string) {
	t := r.t
	t.Helper()
	c := r.portalClient(sub)
	_, tok, err := portalPage(c)
	if err != nil {
		t.Fatal(err)
	}
	resp, body, err := portalPost(c, "/claim", url.Values{"token": {tok}, "isp": {isp}, "customer_id": {customer}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the switch's first step: %v %v\n%s", resp, err, body)
	}
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no confirmation form:\n%s", body)
	}
	resp, body, err = portalPost(c, "/claim?confirm=1", url.Values{"token": {m[1]}, "isp": {isp}, "customer_id": {customer}, "password": {password}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the switch's confirmation: %v %v\n%s", resp, err, body)
	}
}

// The same switch, with ispmux restarted once the device's beta lease is
// NAKed (its DORA with alpha under way): the hold of its handover is RAM
// and gone, but the claim is recent (its time is in the store), so
// alpha's silence still sends the device to the walled garden. Before,
// a restart in that window left it without an address and without a
// portal, and counted nothing (found by a new-user trial).
func TestPortalSwitchRestart(t *testing.T) {
	t.Parallel()
	r, s2 := switchRig(t)
	r.portalSwitch(s2, "alpha", "a-new", "alpha-pass-new")
	if !eventually(30*time.Second, func() bool { return r.counterNow("switch_held") > 0 }) {
		t.Fatalf("s2's renewal not NAKed for the switch; ispmux log:\n%s", r.log.String())
	}
	r.stop()
	r.start()
	if !eventually(90*time.Second, func() bool { return r.backInGarden(s2, "alpha") }) {
		o, ok := r.onboarding(s2.MAC)
		t.Fatalf("s2 not in the walled garden after the restart and alpha's silence: onboarding %+v %v; ispmux log:\n%s", o, ok, r.log.String())
	}
	if r.counterNow("handover_failed_unanswered") == 0 {
		t.Error("handover_failed_unanswered not counted after the restart")
	}
}
