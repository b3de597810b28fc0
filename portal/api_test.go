package portal

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

func TestCaptiveAPI(t *testing.T) {
	r := newRig(t, nil)
	api := func(from netip.Addr) map[string]any {
		t.Helper()
		w := r.do(req{target: "/api/captive", from: from})
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/captive+json" || w.Header().Get("Cache-Control") != "private" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// RFC 8908 §5: seconds-remaining is the time until a client that is
	// not captive becomes captive, left out for a captive one.
	m := api(addrA) // onboarding, its lease ends in 90 s
	if m["captive"] != true || m["user-portal-url"] != "https://"+host+"/" || m["seconds-remaining"] != nil {
		t.Errorf("onboarding: %v", m)
	}
	if m := api(netip.MustParseAddr("192.0.2.1")); m["captive"] != true || m["user-portal-url"] != "https://"+host+"/" || m["seconds-remaining"] != nil {
		t.Errorf("unknown: %v", m)
	}
	r.dir.set(Subscriber{MAC: macA, Addr: addrA, ISP: "alpha", Expires: time.Now().Add(time.Hour)})
	if m := api(addrA); m["captive"] != false || m["seconds-remaining"] != nil {
		t.Errorf("bound: %v", m)
	}
	// Bound at alpha and waiting to be handed over to beta, which it
	// chose on the portal: online at alpha until then, not captive.
	r.dir.set(Subscriber{MAC: macA, Addr: addrA, ISP: "alpha", Claimed: "beta", Expires: time.Now().Add(time.Hour)})
	if m := api(addrA); m["captive"] != false || m["seconds-remaining"] != nil {
		t.Errorf("bound, moving: %v", m)
	}
	r.dir.set(Subscriber{MAC: macA, Addr: addrA, Claimed: "alpha"})
	if m := api(addrA); m["captive"] != true || m["seconds-remaining"] != nil {
		t.Errorf("claimed, unknown expiry: %v", m)
	}
}

func TestMove(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "alpha"})
	w := r.do(req{target: "/", from: addrA})
	b := w.Body.String()
	if !strings.Contains(b, "This device is connected to Alpha Net.") || strings.Contains(b, `type="password"`) {
		t.Fatalf("bound page: %s", b)
	}
	c, tok := r.cookieAndToken(w, nil)
	// Step 1: the confirmation names both ISPs; nothing is claimed, a
	// password sent there is not used nor shown.
	w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-9", "early-pw"), cookie: c, hdr: sameOrigin})
	b = w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(b, "You are on Alpha Net. Move this device to Beta &amp; Co?") ||
		!strings.Contains(b, `action="/claim?confirm=1"`) || !strings.Contains(b, `type="hidden" name="isp" value="beta"`) ||
		!strings.Contains(b, `type="hidden" name="customer_id" value="c-9"`) || !strings.Contains(b, `type="password"`) ||
		strings.Contains(b, "early-pw") || !strings.Contains(b, "Cancel and stay on Alpha Net") {
		t.Fatalf("confirm page: %d %s", w.Code, b)
	}
	if n := len(r.cl.calls()); n != 0 {
		t.Fatalf("claimed before confirmation: %d", n)
	}
	_, ctok := r.cookieAndToken(w, c)
	confirm := func(tok, isp, id, pw string) *httptest.ResponseRecorder {
		return r.do(req{method: http.MethodPost, target: "/claim?confirm=1", from: addrA, form: claimForm(tok, isp, id, pw), cookie: c, hdr: sameOrigin})
	}
	// The confirmation cannot be skipped or changed.
	for _, w := range []*httptest.ResponseRecorder{confirm(tok, "beta", "c-9", "pw"), confirm(ctok, "alpha", "c-9", "pw"), confirm(ctok, "beta", "c-8", "pw")} {
		if w.Code != http.StatusForbidden {
			t.Errorf("altered confirmation: %d", w.Code)
		}
	}
	// Without the password: asked again.
	if w := confirm(ctok, "beta", "c-9", ""); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `<a href="#password">Enter your password.</a>`) {
		t.Errorf("no password: %d %s", w.Code, w.Body)
	}
	// Wrong password: the confirmation again, its summary on the password.
	r.cl.err = tenants.ErrBadCredentials
	if w := confirm(ctok, "beta", "c-9", "wrong"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "Move this device to Beta &amp; Co?") ||
		!strings.Contains(w.Body.String(), `<a href="#password">The customer ID or password`) {
		t.Errorf("wrong password: %d %s", w.Code, w.Body)
	}
	r.cl.err = nil
	w = confirm(ctok, "beta", "c-9", "right")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/done" {
		t.Fatalf("confirmed: %d %s", w.Code, w.Body)
	}
	got := r.cl.calls()
	if last := got[len(got)-1]; last != (tenants.ClaimRequest{ISP: "beta", CustomerID: "c-9", Password: "right", MAC: "02:00:00:00:00:0a", Access: "port1", Circuit: "access port1"}) {
		t.Errorf("claim %+v", last)
	}
	// /done while the Directory still shows Alpha: the move to Beta.
	if w := r.do(req{target: "/done", from: addrA}); !strings.Contains(w.Body.String(), "You chose Beta &amp; Co.") {
		t.Errorf("done: %s", w.Body)
	}
}

func TestInFlightCap(t *testing.T) {
	r := newRig(t, nil)
	r.dir.wait, r.dir.in = make(chan struct{}), make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for range maxInFlight {
		wg.Go(func() { r.do(req{target: "/", from: addrA}) })
	}
	for range maxInFlight {
		<-r.dir.in
	}
	w := r.do(req{target: "/", from: addrA})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("9th request: %d", w.Code)
	}
	close(r.dir.wait)
	wg.Wait()
	r.dir.in = nil
	if w := r.do(req{target: "/", from: addrA}); w.Code != http.StatusOK {
		t.Errorf("after: %d", w.Code)
	}
	if st := r.srv.Stats(); st.Busy != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The time a move takes, on the confirmation and the switching page, is
// until the client lease the device holds runs out (plus a DORA's few
// seconds) when that is sooner than MoveHint (client_lease_max / 2 + 5
// s): a device given a 30 s lease (what was left of a short ISP lease)
// moves within that, not within 6 minutes. Before, the pages always said
// MoveHint ("within about 6 minutes"; the switch took 10 s).
func TestMoveWaitFollowsClientLease(t *testing.T) {
	r := newHintRig(t, Config{HandoverHint: 40 * time.Second, MoveHint: 305 * time.Second})
	for _, c := range []struct {
		end  time.Time
		want string
	}{
		{time.Now().Add(29*time.Second + 500*time.Millisecond), "within about 35 seconds"},
		{time.Time{}, "within about 6 minutes"},                      // not known (restored)
		{time.Now().Add(-time.Second), "within about 6 minutes"},     // run out: its renewal is late
		{time.Now().Add(10 * time.Minute), "within about 6 minutes"}, // MoveHint is sooner
	} {
		r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "alpha", ClientLeaseEnd: c.end})
		w := r.do(req{target: "/", from: addrA})
		cookie, tok := r.cookieAndToken(w, nil)
		w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-9", ""), cookie: cookie, hdr: sameOrigin})
		if b := w.Body.String(); !strings.Contains(b, "switches to Beta &amp; Co "+c.want+".") {
			t.Errorf("client lease end %v: the confirmation does not say %q:\n%s", c.end, c.want, b)
		}
		r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "alpha", ClientLeaseEnd: c.end, Claimed: "beta"})
		if b := r.do(req{target: "/done", from: addrA, cookie: cookie}).Body.String(); !strings.Contains(b, "will switch to Beta &amp; Co "+c.want) {
			t.Errorf("client lease end %v: the switching page does not say %q:\n%s", c.end, c.want, b)
		}
	}
}

// A device that chose another ISP can correct its choice until the
// switch: the switching page links to the form again, which holds the
// choice made; a bound one goes on to the move's confirmation (back to
// the ISP it is on, to stay). Before, the switching page had no form and
// no link: a wrong choice waited for the switch, and the failure page.
func TestChooseAgainBeforeSwitch(t *testing.T) {
	r := newRig(t, nil)
	for _, sub := range []Subscriber{
		{MAC: macA, Access: "port1", Addr: addrA, ISP: "alpha", Claimed: "beta", ClaimedCustomerID: "c-9"},
		{MAC: macA, Access: "port1", Addr: addrA, Claimed: "beta", ClaimedCustomerID: "c-9", Expires: time.Now().Add(time.Minute)},
	} {
		r.dir.set(sub)
		w := r.do(req{target: "/", from: addrA})
		if b := w.Body.String(); !strings.Contains(b, "You chose Beta &amp; Co.") || !strings.Contains(b, `href="/?again=1"`) ||
			(sub.ISP != "") != strings.Contains(b, "or want to stay on Alpha Net? Choose again (to stay, choose Alpha Net and your customer ID there)") {
			t.Fatalf("on %q, the switching page has no (right) link to choose again:\n%s", sub.ISP, b)
		}
		w = r.do(req{target: "/?again=1", from: addrA})
		b := w.Body.String()
		if w.Code != http.StatusOK || !strings.Contains(b, `name="customer_id"`) || !strings.Contains(b, `value="c-9"`) ||
			!strings.Contains(b, `value="beta" required checked`) {
			t.Fatalf("on %q, choose again: %d, want the form holding beta and c-9:\n%s", sub.ISP, w.Code, b)
		}
		if sub.ISP == "" {
			continue
		}
		c, tok := r.cookieAndToken(w, nil)
		w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "alpha", "c-1", ""), cookie: c, hdr: sameOrigin})
		// Back to the ISP it is on: staying, said as such; cancelling
		// leaves the switch chosen before to go ahead, and says so.
		if b := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(b, "Attach this device to Alpha Net customer ID c-1?") ||
			!strings.Contains(b, "if it already is, nothing changes; a switch to another provider chosen before is called off") ||
			!strings.Contains(b, "Cancel (the switch to Beta &amp; Co chosen before goes ahead)") || strings.Contains(b, "leaves Alpha Net") {
			t.Errorf("back to alpha: %d, want the confirmation of staying:\n%s", w.Code, b)
		}
	}
}

// TestMoveHintNowFollowsLeaseMax: with MoveHintNow (the appliance's: the
// longest client lease in force, which a reload lowering client_lease_max
// keeps until the longer leases have run out), the pages say it at each
// page; a trial's page said "about 20 seconds" after such a reload, and
// the switch took 49.
func TestMoveHintNowFollowsLeaseMax(t *testing.T) {
	r := newHintRig(t, Config{HandoverHint: 40 * time.Second, MoveHint: 20 * time.Second,
		MoveHintNow: func() time.Duration { return 65 * time.Second }})
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "alpha", Claimed: "beta"})
	if b := r.do(req{target: "/done", from: addrA}).Body.String(); !strings.Contains(b, "will switch to Beta &amp; Co within about 65 seconds") {
		t.Errorf("the switching page does not follow MoveHintNow:\n%s", b)
	}
}

// newHintRig is the rig with cfg's hints (its host, ISPs and certificate
// the rig's), and no subscriber in its directory.
func newHintRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cert, key, "one")
	r := &rig{t: t, cert: cert, key: key, dir: &fakeDir{subs: map[netip.Addr]Subscriber{}}, cl: &fakeClaimer{}}
	cfg.Hostname, cfg.ISPs, cfg.CertFile, cfg.KeyFile = host, isps, cert, key
	srv, err := New(cfg, r.dir, r.cl)
	if err != nil {
		t.Fatal(err)
	}
	r.srv, r.h = srv, srv.Handler()
	return r
}
