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
			body, _, err := portalPage(r.portalClient(c.s))
			if err != nil {
				t.Fatalf("%s: %v", c.s.Name, err)
			}
			if !strings.Contains(body, "connected to "+c.want) {
				t.Errorf("%s's portal page does not say it is on %s:\n%s", c.s.Name, c.want, body)
			}
		}
	})

	t.Run("a form posted from another origin is refused", func(t *testing.T) {
		c := r.portalClient(s1)
		_, tok, err := portalPage(c)
		if err != nil {
			t.Fatal(err)
		}
		f := url.Values{"token": {tok}, "isp": {"beta"}, "customer_id": {"c-s2"}}
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
		if b, ok := r.bound(s1.MAC); !ok || b.ISP != "alpha" {
			t.Errorf("s1 after the cross-origin post: %+v %v", b, ok)
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
