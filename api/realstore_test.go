package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

type realNopProxy struct{}

func (realNopProxy) RevalidateMACs(m []uint64) int          { return len(m) }
func (realNopProxy) RevalidateMACsImmediate(m []uint64) int { return len(m) }

// newRealFixture is newFixture over the real tenants.Service (a store in
// a temp dir) instead of the fake.
func newRealFixture(t *testing.T) (*fixture, *tenants.Tenants, *subscribers.Store) {
	return newRealFixtureLimits(t, tenants.ClaimLimits{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond})
}

func newRealFixtureLimits(t *testing.T, lim tenants.ClaimLimits) (*fixture, *tenants.Tenants, *subscribers.Store) {
	t.Helper()
	f := newFixture(t)
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ten := tenants.New(tenants.Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100,
		Claim: lim, Circuits: []tenants.Circuit{{Access: "acc0"}, {Access: "acc1", VLAN: 7}}},
		st, registry.New(), realNopProxy{}, nil, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	toks, err := auth.LoadTokens(auth.TokenFilesFromConfig(f.cfg))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = New(f.cfg.API, ten, toks, nil)
	f.h = f.srv.Handler()
	return f, ten, st
}

// A customer ID the store refuses (over 255 bytes, or empty) in a path or
// a body is the caller's mistake: a 4xx problem, never a 500.
func TestBadCustomerIDIs4xx(t *testing.T) {
	f, _, _ := newRealFixture(t)
	long := strings.Repeat("x", 300)
	cases := []struct{ method, path, body string }{
		{"GET", "/v1/isps/alpha/customers/" + long, ""},
		{"PATCH", "/v1/isps/alpha/customers/" + long, `{"status":"suspended"}`},
		{"DELETE", "/v1/isps/alpha/customers/" + long, ""},
		{"POST", "/v1/isps/alpha/devices", `{"mac":"02:00:00:00:00:09","customer_id":""}`},
		{"POST", "/v1/isps/alpha/devices", `{"mac":"02:00:00:00:00:09","customer_id":"` + long + `"}`},
	}
	for _, c := range cases {
		w := f.do(c.method, c.path, "alpha", c.body, "Content-Type", "application/json")
		if w.Code >= 500 || w.Code < 400 {
			t.Errorf("%s %s %s: status %d, want a 4xx problem (%.60s)", c.method, c.path[:min(len(c.path), 40)], c.body[:min(len(c.body), 60)], w.Code, w.Body)
		}
	}
	_ = http.StatusOK
}

// The claim limits hold for concurrent claims too: one claim per customer
// is checked at a time, so N concurrent claims of one claim token with N
// different MACs are as few password guesses as N sequential ones (its
// first 3 on new-claimant tokens, then the back-off), the rest 429 (before,
// every claim already past the back-off's check when the first one failed
// was verified).
func TestClaimBackoffConcurrent(t *testing.T) {
	f, _, _ := newRealFixtureLimits(t, tenants.ClaimLimits{}) // the defaults
	for _, id := range []string{"c-9", "c-10"} {
		if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"`+id+`","password":"right one"}`); w.Code != 201 {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
	}
	const n = 32
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"isp":"alpha","customer_id":"c-9","password":"guess-%d","mac":"02:00:00:00:01:%02x"}`, i, i)
			codes <- f.do("POST", "/v1/claims", "claim", body).Code
		}()
	}
	wg.Wait()
	close(codes)
	guesses := 0
	for c := range codes {
		if c == http.StatusForbidden { // bad-credentials: the password was verified
			guesses++
		}
	}
	// Control: the same 32 claims one after the other give one guess.
	seq := 0
	for i := range n {
		body := fmt.Sprintf(`{"isp":"alpha","customer_id":"c-10","password":"guess-%d","mac":"02:00:00:00:02:%02x"}`, i, i)
		if f.do("POST", "/v1/claims", "claim", body).Code == http.StatusForbidden {
			seq++
		}
	}
	// One claimant (the claim token) tries a customer a few times on
	// new-claimant tokens (3: tenants' ownTries), then waits the back-off.
	if seq != 3 {
		t.Fatalf("sequential control: %d guesses verified, want 3", seq)
	}
	if guesses > 3 {
		t.Errorf("%d of %d concurrent wrong-password claims were verified (403 bad-credentials), not rate-limited (429): the limits admit 3", guesses, n)
	}
}

// GET …/bindings?mac= is one MAC's bindings, looked up on each access
// circuit (at most one per circuit, any ISP for the operator, the token's
// ISP's only for an ISP).
func TestBindingsOfMAC(t *testing.T) {
	f, ten, st := newRealFixture(t)
	m := subscribers.MAC{2, 0, 0, 0, 0, 9}
	since := time.Now().Add(-72 * time.Hour).UTC().Truncate(time.Second)
	for _, b := range []subscribers.Binding{
		{MAC: m, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.9"), Expires: time.Now().Add(time.Hour)},
		{MAC: m, Access: "acc1", VLAN: 7, ISP: "beta", IP: netip.MustParseAddr("100.64.0.10"), Expires: time.Now().Add(time.Hour), Since: since},
		{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.8"), Expires: time.Now().Add(time.Hour)},
	} {
		if err := st.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	get := func(tok, path string) []tenants.Binding {
		t.Helper()
		w := f.do("GET", path, tok, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		var p struct{ Items []tenants.Binding }
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		return p.Items
	}
	if bs := get("operator", "/v1/bindings?mac=02:00:00:00:00:09"); len(bs) != 2 || bs[0].Access != "acc0" || bs[1].VLAN != 7 {
		t.Errorf("operator: %+v", bs)
	}
	if bs := get("beta", "/v1/isps/beta/bindings?mac=02-00-00-00-00-09"); len(bs) != 1 || bs[0].ISP != "beta" {
		t.Errorf("beta: %+v", bs)
	}
	// The binding's start, where it is stored (Binding.Since); none on
	// the others.
	if w := f.do("GET", "/v1/bindings?mac=02:00:00:00:00:09", "operator", ""); !strings.Contains(w.Body.String(), `"since":"`+since.Format(time.RFC3339)+`"`) ||
		strings.Count(w.Body.String(), `"since"`) != 1 {
		t.Errorf("since %s on acc1's binding alone: %s", since.Format(time.RFC3339), w.Body)
	}
	if bs := get("alpha", "/v1/isps/alpha/bindings?mac=02:00:00:00:00:07"); len(bs) != 0 {
		t.Errorf("no binding: %+v", bs)
	}
	if w := f.do("GET", "/v1/bindings?mac=nonsense", "operator", ""); w.Code < 400 || w.Code >= 500 {
		t.Errorf("bad MAC: %d", w.Code)
	}
	// With a proxy that knows the device's own lease: client_lease_end
	// beside the ISP's expires, on the binding of that circuit alone.
	end := time.Now().Add(5 * time.Minute).UTC().Truncate(time.Second)
	ten.SetProxy(clientLeaseProxy{access: "acc1", vlan: 7, mac: 0x020000000009, end: end})
	w := f.do("GET", "/v1/bindings?mac=02:00:00:00:00:09", "operator", "")
	if !strings.Contains(w.Body.String(), `"client_lease_end":"`+end.Format(time.RFC3339)+`"`) || strings.Count(w.Body.String(), "client_lease_end") != 1 {
		t.Errorf("client_lease_end %s on acc1's binding alone: %s", end.Format(time.RFC3339), w.Body)
	}
}

// clientLeaseProxy knows one client lease (tenants.ClientLeases).
type clientLeaseProxy struct {
	realNopProxy
	access string
	vlan   uint16
	mac    uint64
	end    time.Time
}

func (p clientLeaseProxy) ClientLeaseEnd(access string, vlan uint16, mac uint64, _ string, _ netip.Addr) (time.Time, bool) {
	return p.end, access == p.access && vlan == p.vlan && mac == p.mac
}

// attachAs posts a device attach to isp's devices as who, with request id
// id, and returns the answer.
func attachAs(f *fixture, who, isp, mac, customer, id string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do("POST", "/v1/isps/"+isp+"/devices", who, `{"mac":"`+mac+`","customer_id":"`+customer+`"}`, "X-Request-Id", id)
}

// eventsOf returns the events GET path answers who.
func eventsOf(t *testing.T, f *fixture, who, path string) []tenants.Event {
	t.Helper()
	w := f.do("GET", path, who, "")
	var el EventList
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &el) != nil {
		t.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
	return el.Items
}

// An ISP attaching a MAC that is another ISP's customer's device learns
// that it cannot have it (409 device-unavailable: ask the operator), and
// nothing about whose it is: not the ISP, not the customer, not how it
// was attached (a configuration device answered "comes from the
// configuration", an API one "attached elsewhere": a competitor's
// provisioning, told apart). The operator's answer names the holder, and
// the refusal is an attach-refused event in the operator's log only, with
// the ISP's request id (what the ISP quotes to the operator).
func TestAttachOtherISPsDeviceTellsNothing(t *testing.T) {
	f, ten, _ := newRealFixture(t)
	if _, err := ten.SyncConfig([]tenants.ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ isp, body string }{
		{"alpha", `{"customer_id":"a-5"}`},
		{"beta", `{"customer_id":"c-77","password":"correct horse"}`},
	} {
		if w := f.do("POST", "/v1/isps/"+c.isp+"/customers", c.isp, c.body); w.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
	}
	if w := attachAs(f, "alpha", "alpha", "02:00:00:00:00:07", "a-5", "alpha-attach"); w.Code != http.StatusCreated {
		t.Fatalf("alpha attach: %d %s", w.Code, w.Body)
	}
	secret := []string{"alpha", "a-5", "building-1", "config"}
	leaks := func(who string, p Problem) {
		t.Helper()
		for _, s := range secret {
			if strings.Contains(strings.ToLower(p.Title+" "+p.Detail), s) {
				t.Errorf("%s's problem says %q: %+v", who, s, p)
			}
		}
	}
	var details []string
	for _, mac := range []string{"02:00:00:00:00:07", "02:00:00:00:00:08"} { // alpha's API device, alpha's config device
		w := attachAs(f, "beta", "beta", mac, "c-77", "beta-probe-"+mac[len(mac)-1:])
		p := decodeProblem(t, w)
		if w.Code != http.StatusConflict || p.Type != ProblemTypePrefix+"device-unavailable" || !strings.Contains(p.Detail, "operator") {
			t.Errorf("beta attaching alpha's %s: %d %s %q, want 409 device-unavailable telling to ask the operator", mac, w.Code, p.Type, p.Detail)
		}
		leaks("beta", p)
		details = append(details, strings.ReplaceAll(p.Detail, mac, "MAC"))
	}
	if details[0] != details[1] {
		t.Errorf("an API device and a configuration device of another ISP answer differently: %q, %q", details[0], details[1])
	}
	// A claim (an installer's token) for beta's customer: the same.
	w := f.do("POST", "/v1/claims", "claim", `{"isp":"beta","customer_id":"c-77","password":"correct horse","mac":"02:00:00:00:00:07"}`)
	if p := decodeProblem(t, w); w.Code != http.StatusConflict || p.Type != ProblemTypePrefix+"device-unavailable" {
		t.Errorf("claim of alpha's device: %d %s %q", w.Code, p.Type, p.Detail)
	} else {
		leaks("the claim token", p)
	}

	// The operator, attaching to beta's customer, is told whose it is.
	w = attachAs(f, "operator", "beta", "02:00:00:00:00:07", "c-77", "op-attach")
	if p := decodeProblem(t, w); w.Code != http.StatusConflict || p.Type != ProblemTypePrefix+"device-unavailable" ||
		!strings.Contains(p.Detail, `"alpha"`) || !strings.Contains(p.Detail, `"a-5"`) {
		t.Errorf("operator: %d %s %q, want the holder (alpha, a-5) named", w.Code, p.Type, p.Detail)
	}
	// The operator's log has the refusal with the whole story; neither
	// ISP's has anything of it.
	var refused []tenants.Event
	for _, e := range eventsOf(t, f, "operator", "/v1/events") {
		if e.Kind == "attach-refused" {
			refused = append(refused, e)
		}
	}
	if len(refused) == 0 {
		t.Fatal("no attach-refused event in the operator's log")
	}
	if e := refused[0]; e.RequestID != "beta-probe-7" || e.ISP != "" || e.MAC != "02:00:00:00:00:07" || e.Actor != "isp:beta-1" ||
		!strings.Contains(e.Reason, `"a-5"`) || !strings.Contains(e.Reason, `"c-77"`) {
		t.Errorf("attach-refused event %+v: want beta's request, the MAC, both customers, no ISP (the operator's only)", e)
	}
	for _, isp := range []string{"alpha", "beta"} {
		for _, e := range eventsOf(t, f, isp, "/v1/isps/"+isp+"/events") {
			if e.Kind == "attach-refused" || strings.HasPrefix(e.RequestID, "beta-probe") && isp == "alpha" {
				t.Errorf("%s's events show %+v", isp, e)
			}
		}
	}
	// Nothing moved.
	if w := f.do("GET", "/v1/devices/02:00:00:00:00:07", "operator", ""); !strings.Contains(w.Body.String(), `"customer_id":"a-5"`) {
		t.Errorf("device after the refusals: %s", w.Body)
	}
}

// What docs/API.md promises an ISP token: another ISP's customer, device,
// binding or cursor is answered exactly as one that does not exist
// (status, problem type, title and detail, the probed key aside), on every
// route that looks one up. A guard: no existence oracle found on these.
func TestOtherISPsObjectsAnswerAsAbsent(t *testing.T) {
	f, ten, st := newRealFixture(t)
	if _, err := ten.SyncConfig([]tenants.ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a-1", "a-2", "a-3"} {
		if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"`+id+`"}`); w.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
	}
	if w := attachAs(f, "alpha", "alpha", "02:00:00:00:00:07", "a-1", "r"); w.Code != http.StatusCreated {
		t.Fatalf("attach: %d %s", w.Code, w.Body)
	}
	if err := st.CommitBinding(subscribers.Binding{MAC: subscribers.MAC{2, 0, 0, 0, 0, 7}, Access: "acc0", ISP: "alpha", Customer: "a-1",
		IP: netip.MustParseAddr("100.64.0.7"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var page list[tenants.Customer]
	if w := f.do("GET", "/v1/isps/alpha/customers?limit=1", "alpha", ""); json.Unmarshal(w.Body.Bytes(), &page) != nil || page.Next == "" {
		t.Fatalf("alpha's cursor: %s", w.Body)
	}
	if w := f.do("POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"b-1"}`); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	absentCursor := "YmV0YQB6enp6" // "beta\x00zzzz": no such customer, beta's own shape
	cases := []struct{ method, alphas, absent, body string }{
		{"GET", "/v1/isps/beta/customers/a-1", "/v1/isps/beta/customers/zz-9", ""},
		{"PATCH", "/v1/isps/beta/customers/a-1", "/v1/isps/beta/customers/zz-9", `{"status":"suspended"}`},
		{"DELETE", "/v1/isps/beta/customers/a-1", "/v1/isps/beta/customers/zz-9", ""},
		{"GET", "/v1/isps/beta/devices/02:00:00:00:00:07", "/v1/isps/beta/devices/02:00:00:00:00:99", ""},
		{"GET", "/v1/isps/beta/devices/02:00:00:00:00:08", "/v1/isps/beta/devices/02:00:00:00:00:99", ""},
		{"DELETE", "/v1/isps/beta/devices/02:00:00:00:00:07", "/v1/isps/beta/devices/02:00:00:00:00:99", ""},
		{"PATCH", "/v1/isps/beta/devices/02:00:00:00:00:07", "/v1/isps/beta/devices/02:00:00:00:00:99", `{"access":"acc0"}`},
		{"PATCH", "/v1/isps/beta/devices/02:00:00:00:00:08", "/v1/isps/beta/devices/02:00:00:00:00:99", `{"pin_to_binding":true}`},
		{"DELETE", "/v1/isps/beta/devices/02:00:00:00:00:08", "/v1/isps/beta/devices/02:00:00:00:00:99", ""},
		{"GET", "/v1/isps/beta/devices?customer_id=a-1", "/v1/isps/beta/devices?customer_id=zz-9", ""},
		{"GET", "/v1/isps/beta/bindings?mac=02:00:00:00:00:07", "/v1/isps/beta/bindings?mac=02:00:00:00:00:99", ""},
		{"GET", "/v1/isps/beta/customers?after=" + page.Next, "/v1/isps/beta/customers?after=" + absentCursor + "x", ""},
		{"POST", "/v1/isps/beta/devices", "/v1/isps/beta/devices", `{"mac":"02:00:00:00:00:09","customer_id":"a-1"}`},
		{"GET", "/v1/isps/alpha/customers/a-1", "/v1/isps/gamma/customers/a-1", ""},
	}
	for _, c := range cases {
		body2 := strings.ReplaceAll(c.body, "a-1", "zz-9")
		w1, w2 := f.do(c.method, c.alphas, "beta", c.body), f.do(c.method, c.absent, "beta", body2)
		norm := func(w *httptest.ResponseRecorder, path string) string {
			var p Problem
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			p.RequestID, p.Instance = "", ""
			d := p.Detail
			for _, k := range []string{"a-1", "zz-9", "02:00:00:00:00:07", "02:00:00:00:00:08", "02:00:00:00:00:99", page.Next, absentCursor + "x"} {
				d = strings.ReplaceAll(d, k, "KEY")
			}
			p.Detail = d
			if p.Type == "" {
				return fmt.Sprintf("%d %s", w.Code, w.Body)
			}
			return fmt.Sprintf("%d %+v", w.Code, p)
		}
		if a, b := norm(w1, c.alphas), norm(w2, c.absent); a != b || w1.Code < 300 && !strings.Contains(w1.Body.String(), `"items":[]`) {
			t.Errorf("%s %s as beta: %s\n  an absent one: %s", c.method, c.alphas, a, b)
		}
	}
	// Nothing of alpha's changed.
	if w := f.do("GET", "/v1/isps/alpha/customers/a-1", "alpha", ""); !strings.Contains(w.Body.String(), `"status":"active"`) || !strings.Contains(w.Body.String(), `"devices":1`) {
		t.Errorf("alpha's customer after beta's probes: %s", w.Body)
	}
}

// PATCH on a device sets, moves and clears its access pin: the device's
// ISP on its own path, the operator on either; a device-updated event
// names the actor and the request; a pin to an access that is not one of
// the box's, or to a binding the device does not hold, is refused; a
// device of the configuration is read-only. Before, no route changed an
// attached device's pin (405 on PATCH).
func TestPatchDevicePin(t *testing.T) {
	f, ten, st := newRealFixture(t)
	const m = "02:00:00:00:00:07"
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"a-1"}`); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if w := attachAs(f, "alpha", "alpha", m, "a-1", "r-attach"); w.Code != http.StatusCreated {
		t.Fatalf("attach: %d %s", w.Code, w.Body)
	}
	patch := func(who, path, body string) (*httptest.ResponseRecorder, tenants.Device) {
		t.Helper()
		w := f.do("PATCH", path, who, body, "Content-Type", "application/json", "X-Request-Id", "r-pin-"+who)
		var d tenants.Device
		if w.Code == http.StatusOK {
			if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
				t.Fatal(err)
			}
		}
		return w, d
	}
	if w, d := patch("alpha", "/v1/isps/alpha/devices/"+m, `{"access":"acc1"}`); w.Code != http.StatusOK || d.Access != "acc1" {
		t.Fatalf("alpha pins its device to acc1: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/v1/isps/alpha/devices/"+m, "alpha", ""); !strings.Contains(w.Body.String(), `"access":"acc1"`) {
		t.Errorf("GET after the pin: %s", w.Body)
	}
	evs := eventsOf(t, f, "alpha", "/v1/isps/alpha/events")
	if e := evs[len(evs)-1]; e.Kind != "device-updated" || e.MAC != m || e.Access != "acc1" || e.Actor != "isp:alpha-1" || e.RequestID != "r-pin-alpha" {
		t.Errorf("event %+v, want device-updated to acc1 by isp:alpha-1, request r-pin-alpha", e)
	}
	if w, d := patch("operator", "/v1/devices/"+m, `{"access":""}`); w.Code != http.StatusOK || d.Access != "" || strings.Contains(w.Body.String(), `"access"`) {
		t.Errorf("operator clears the pin: %d %s", w.Code, w.Body)
	}
	if w, d := patch("operator", "/v1/isps/alpha/devices/"+m, `{"access":"acc0"}`); w.Code != http.StatusOK || d.Access != "acc0" {
		t.Errorf("operator pins on the ISP's path: %d %s", w.Code, w.Body)
	}
	if w, d := patch("alpha", "/v1/isps/alpha/devices/"+m, `{}`); w.Code != http.StatusOK || d.Access != "acc0" {
		t.Errorf("an empty patch: %d %s, want the device unchanged", w.Code, w.Body)
	}

	refused := []struct{ who, path, body, want string }{
		{"alpha", "/v1/isps/alpha/devices/" + m, `{"access":"nope"}`, "invalid"},
		{"alpha", "/v1/isps/alpha/devices/" + m, `{"access":"acc1","pin_to_binding":true}`, "invalid"},
		{"alpha", "/v1/isps/alpha/devices/" + m, `{"pin_to_binding":true}`, "conflict"}, // no binding
		{"alpha", "/v1/isps/alpha/devices/" + m, `{"acces":"acc1"}`, "bad-request"},
		{"alpha", "/v1/devices/" + m, `{"access":"acc1"}`, "forbidden"},
		{"claim", "/v1/isps/alpha/devices/" + m, `{"access":"acc1"}`, "forbidden"},
		{"beta", "/v1/isps/beta/devices/" + m, `{"access":"acc1"}`, "not-found"},
		{"alpha", "/v1/isps/alpha/devices/not-a-mac", `{"access":"acc1"}`, "bad-request"},
	}
	for _, c := range refused {
		w, _ := patch(c.who, c.path, c.body)
		var p Problem
		_ = json.Unmarshal(w.Body.Bytes(), &p)
		if p.Type != ProblemTypePrefix+c.want {
			t.Errorf("%s PATCH %s %s: %d %s, want %s", c.who, c.path, c.body, w.Code, w.Body, c.want)
		}
	}

	// Pinned to the access it is bound on: acc1, VLAN 7.
	if err := st.CommitBinding(subscribers.Binding{MAC: subscribers.MAC{2, 0, 0, 0, 0, 7}, Access: "acc1", VLAN: 7, ISP: "alpha", Customer: "a-1",
		IP: netip.MustParseAddr("100.64.0.7"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if w, d := patch("alpha", "/v1/isps/alpha/devices/"+m, `{"pin_to_binding":true}`); w.Code != http.StatusOK || d.Access != "acc1" {
		t.Errorf("pin to its binding: %d %s, want acc1", w.Code, w.Body)
	}

	// A device of the configuration: read-only.
	if _, err := ten.SyncConfig([]tenants.ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "building-1", Access: "acc0"}}); err != nil {
		t.Fatal(err)
	}
	if w, _ := patch("operator", "/v1/devices/02:00:00:00:00:08", `{"access":""}`); w.Code != http.StatusConflict {
		t.Errorf("clear a configuration device's pin: %d %s, want 409", w.Code, w.Body)
	}
}

// An ISP's event numbers never count the other ISPs' events: alpha's
// events, between which beta had many, are numbered 1, 2, 3 (after the
// store's base, b) in everything alpha reads (seq, next, oldest, newest),
// and alpha's cursor resumes in that sequence. Before, they carried the
// box's one sequence, whose gaps told alpha how busy its competitor's
// customers were. The operator's log keeps the box's sequence.
func TestISPEventNumbersHideOtherISPs(t *testing.T) {
	f, _, st := newRealFixture(t)
	b := st.EventBase()
	n := func(i uint64) string { return fmt.Sprint(b + i) }
	for i := range 3 {
		if _, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: "alpha", MAC: subscribers.MAC{2, 0, 0, 0, 0, byte(i)}}); err != nil {
			t.Fatal(err)
		}
		for j := range 5 * (i + 1) {
			if _, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: "beta", MAC: subscribers.MAC{2, 0, 0, 0, 1, byte(j)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	page := func(after string) EventList {
		t.Helper()
		w := f.do("GET", "/v1/isps/alpha/events?after="+after, "alpha", "")
		var el EventList
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &el) != nil {
			t.Fatalf("alpha's events: %d %s", w.Code, w.Body)
		}
		return el
	}
	el := page("0")
	var seqs []uint64
	for _, e := range el.Items {
		seqs = append(seqs, e.Seq)
	}
	if fmt.Sprint(seqs) != fmt.Sprint([]uint64{b + 1, b + 2, b + 3}) || el.Next != n(3) || el.Oldest != b+1 || el.Newest != b+3 || el.Missed {
		t.Errorf("alpha reads seq %v, next %s, oldest %d, newest %d, missed %v; want b+[1 2 3], b+3, b+1, b+3, false (its own sequence; b %d)",
			seqs, el.Next, el.Oldest, el.Newest, el.Missed, b)
	}
	if el := page(n(1)); len(el.Items) != 2 || el.Items[0].Seq != b+2 || el.Next != n(3) {
		t.Errorf("alpha after 1: %+v; want its events 2 and 3", el)
	}
	all := eventsOf(t, f, "operator", "/v1/events")
	if len(all) != 33 || all[len(all)-1].Seq != b+33 {
		t.Errorf("the operator's log: %d events, the last %+v; want 33, the last numbered 33", len(all), all[len(all)-1])
	}
	// The operator sees each event's number in its ISP's sequence too
	// (isp_seq), to find an event an ISP names; an ISP's reads have no
	// such field (their seq is it).
	var alphaAt, betaAt []uint64 // isp_seq of alpha's, beta's events, by seq
	for _, e := range all {
		switch e.ISP {
		case "alpha":
			alphaAt = append(alphaAt, e.ISPSeq)
		case "beta":
			betaAt = append(betaAt, e.ISPSeq)
		}
	}
	if fmt.Sprint(alphaAt) != fmt.Sprint([]uint64{b + 1, b + 2, b + 3}) || len(betaAt) != 30 || betaAt[0] != b+1 || betaAt[29] != b+30 {
		t.Errorf("the operator's log: alpha's isp_seq %v, beta's %v; want [1 2 3] and 1..30", alphaAt, betaAt)
	}
	if w := f.do("GET", "/v1/isps/alpha/events?after=0", "alpha", ""); strings.Contains(w.Body.String(), "isp_seq") {
		t.Errorf("alpha's read shows isp_seq: %s", w.Body)
	}
	if w := f.do("GET", "/v1/events?after=0&limit=2", "operator", ""); !strings.Contains(w.Body.String(), `"seq":`+n(2)+`,"isp_seq":`+n(1)+`,`) {
		t.Errorf("the operator's read: %s; want seq 2 (beta's 1) with isp_seq 1", w.Body)
	}
}

// The operator blocks a MAC no ISP has attached (POST
// /v1/devices/{mac}/block): 200 with the device of no ISP, blocked,
// listed among the operator's devices and no ISP's. Before, 404. An ISP's
// attach and a claim of it are then 409 device-blocked, naming the
// operator's block; the unblock removes it (a second unblock: 404).
func TestBlockUnregisteredMACOverAPI(t *testing.T) {
	f, _, _ := newRealFixture(t)
	const mac = "02:00:00:00:00:66"
	w := f.do("POST", "/v1/devices/"+mac+"/block", "operator", "")
	var d tenants.Device
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &d) != nil || d.MAC != mac || !d.Blocked || d.ISP != "" {
		t.Fatalf("block of an unregistered MAC: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/v1/devices", "operator", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"mac":"`+mac+`"`) {
		t.Errorf("operator's devices: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/v1/isps/beta/devices", "beta", ""); w.Code != http.StatusOK || strings.Contains(w.Body.String(), mac) {
		t.Errorf("beta's devices: %d %s", w.Code, w.Body)
	}
	if w := f.do("POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"c-77","password":"correct horse"}`); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	w = attachAs(f, "beta", "beta", mac, "c-77", "beta-attach")
	if p := decodeProblem(t, w); w.Code != http.StatusConflict || p.Type != ProblemTypePrefix+"device-blocked" || !strings.Contains(p.Detail, "blocked by the operator") {
		t.Errorf("beta attaching the blocked MAC: %d %s %q, want 409 device-blocked", w.Code, p.Type, p.Detail)
	}
	w = f.do("POST", "/v1/claims", "claim", `{"isp":"beta","customer_id":"c-77","password":"correct horse","mac":"`+mac+`"}`)
	if p := decodeProblem(t, w); w.Code != http.StatusConflict || p.Type != ProblemTypePrefix+"device-blocked" {
		t.Errorf("claim of the blocked MAC: %d %s %q", w.Code, p.Type, p.Detail)
	}
	if w := f.do("POST", "/v1/devices/"+mac+"/unblock", "operator", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"blocked":false`) {
		t.Errorf("unblock: %d %s", w.Code, w.Body)
	}
	if w := f.do("POST", "/v1/devices/"+mac+"/unblock", "operator", ""); w.Code != http.StatusNotFound {
		t.Errorf("second unblock: %d %s, want 404", w.Code, w.Body)
	}
	if w := attachAs(f, "beta", "beta", mac, "c-77", "beta-attach-2"); w.Code != http.StatusCreated {
		t.Errorf("beta attaching after the unblock: %d %s", w.Code, w.Body)
	}
}

// TestCreateEmptyPassword: a create with "password": "" is 422, as a
// PATCH's is; it was a 201 for a customer that could never claim (a
// trial), while a create without a password key is still one with none.
func TestCreateEmptyPassword(t *testing.T) {
	f, _, _ := newRealFixture(t)
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"emptypw","password":""}`); w.Code != 422 {
		t.Errorf("create with an empty password: %d %s, want 422", w.Code, w.Body)
	}
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"nopw"}`); w.Code != 201 {
		t.Errorf("create without a password: %d %s, want 201", w.Code, w.Body)
	}
	for _, id := range []string{"imp", "nopw"} { // new, and existing (it was "unchanged" then)
		if w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", `{"customer_id":"`+id+`","password":""}`+"\n"); !strings.Contains(w.Body.String(), "empty password") {
			t.Errorf("import line for %s with an empty password: %d %s, want its error", id, w.Code, w.Body)
		}
	}
	// The same for an empty password_hash, which was taken for none: a
	// 201 for a customer without a password, a PATCH's 200 changing
	// nothing (an ISP integrator's trial).
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"emptyph","password_hash":""}`); w.Code != 422 || !strings.Contains(w.Body.String(), "empty password_hash") {
		t.Errorf("create with an empty password_hash: %d %s, want 422", w.Code, w.Body)
	}
	if w := f.do("PATCH", "/v1/isps/alpha/customers/nopw", "alpha", `{"password_hash":""}`); w.Code != 422 {
		t.Errorf("PATCH with an empty password_hash: %d %s, want 422", w.Code, w.Body)
	}
	for _, id := range []string{"imp2", "nopw"} {
		if w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", `{"customer_id":"`+id+`","password_hash":""}`+"\n"); !strings.Contains(w.Body.String(), "empty password_hash") {
			t.Errorf("import line for %s with an empty password_hash: %d %s, want its error", id, w.Code, w.Body)
		}
	}
}

// POST /v1/isps/{isp}/devices:import: NDJSON device lines, one result
// each in line order, the ISP's own scope (another ISP's path is 404 to
// its token, as the single attach), a line that is not JSON or names
// another field refused on its own, a MAC twice taken in line order across
// batches (the second line moves it to its customer, as a second attach
// would), the devices registered as a single attach registers them.
func TestImportDevicesOverAPI(t *testing.T) {
	f, ten, st := newRealFixture(t)
	for _, id := range []string{"c-1", "c-2"} {
		if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"`+id+`","device_limit":3}`); w.Code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, w.Code, w.Body)
		}
	}
	body := strings.Join([]string{
		`{"mac":"02:00:00:00:00:01","customer_id":"c-1"}`,
		`{"mac":"02:00:00:00:00:02","customer_id":"c-1","access":"acc1"}`,
		`not json`,
		`{"mac":"02:00:00:00:00:03","customer_id":"c-2","colour":"red"}`,
		``,
		`{"mac":"02:00:00:00:00:01","customer_id":"c-2"}`,
		`{"mac":"02:00:00:00:00:04","customer_id":"c-9"}`,
	}, "\n") + "\n"
	w := f.do("POST", "/v1/isps/alpha/devices:import", "alpha", body, "Content-Type", "application/x-ndjson")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("import: %d %s", w.Code, w.Body)
	}
	var got []tenants.DeviceImportResult
	for _, l := range strings.Split(strings.TrimSpace(w.Body.String()), "\n") {
		var r tenants.DeviceImportResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		got = append(got, r)
	}
	want := []struct {
		line          int
		mac, customer string
		result        string
		errHas        string
	}{
		{1, "02:00:00:00:00:01", "c-1", "attached", ""},
		{2, "02:00:00:00:00:02", "c-1", "attached", ""},
		{3, "", "", "error", "JSON"},
		{4, "02:00:00:00:00:03", "c-2", "error", "colour"},
		{6, "02:00:00:00:00:01", "c-2", "moved", ""},
		{7, "02:00:00:00:00:04", "c-9", "error", "customer c-9"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d:\n%s", len(got), len(want), w.Body)
	}
	for i, x := range want {
		g := got[i]
		if g.Line != x.line || g.MAC != x.mac || g.CustomerID != x.customer || g.Result != x.result || !strings.Contains(g.Error, x.errHas) {
			t.Errorf("result %d: %+v, want %+v", i, g, x)
		}
		// An error line carries the request's id (an error may ask to
		// quote it; it was in the header only: a trial).
		if (x.result == "error") != (g.RequestID != "") || g.RequestID != "" && g.RequestID != w.Header().Get("X-Request-Id") {
			t.Errorf("result %d: request id %q (header %q)", i, g.RequestID, w.Header().Get("X-Request-Id"))
		}
	}
	for m, c := range map[string]string{"02:00:00:00:00:01": "c-2", "02:00:00:00:00:02": "c-1"} {
		d, err := ten.Device(t.Context(), "alpha", m)
		if err != nil || d.CustomerID != c {
			t.Errorf("%s: %+v %v, want customer %s", m, d, err, c)
		}
	}
	if r, err := st.Registration(subscribers.MAC{2, 0, 0, 0, 0, 2}); err != nil || r.Access != "acc1" || r.Source != tenants.SourceAPI {
		t.Errorf("the pinned device: %+v %v", r, err)
	}
	// One MAC in two notations: the same device, taken in line order
	// (the second line went into the same batch and was refused as a
	// duplicate there: a review and a trial).
	w = f.do("POST", "/v1/isps/alpha/devices:import", "alpha",
		`{"mac":"02-00-00-00-00-05","customer_id":"c-1"}`+"\n"+`{"mac":"02:00:00:00:00:05","customer_id":"c-2"}`+"\n")
	if b := w.Body.String(); !strings.Contains(b, `"line":1,"mac":"02:00:00:00:00:05","customer_id":"c-1","result":"attached"`) ||
		!strings.Contains(b, `"line":2,"mac":"02:00:00:00:00:05","customer_id":"c-2","result":"moved"`) {
		t.Errorf("one MAC in two notations: %s", b)
	}
	// beta's token on alpha's path: as for the single attach.
	if w := f.do("POST", "/v1/isps/alpha/devices:import", "beta", body); w.Code != http.StatusNotFound && w.Code != http.StatusForbidden {
		t.Errorf("beta's token importing into alpha: %d %s", w.Code, w.Body)
	}
	w = f.do("POST", "/v1/isps/alpha/devices:import", "alpha", "x", "Content-Type", "text/csv")
	if body := w.Body.String(); decodeProblem(t, w).Status != http.StatusUnsupportedMediaType || !strings.Contains(body, "one JSON device per line") {
		t.Errorf("CSV: %d %s", w.Code, body)
	}
}
