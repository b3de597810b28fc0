package api

import (
	"encoding/json"
	"fmt"
	"net/http"
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

// The per-customer back-off after a failed claim (1 s, doubling to 1 min)
// holds for concurrent claims too: one claim per customer is checked at a
// time, so N concurrent claims with N different MACs are one password
// guess and 429s, as N sequential ones are (before, every claim already
// past the back-off's check when the first one failed was verified).
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
		if c == http.StatusUnauthorized { // bad-credentials: the password was verified
			guesses++
		}
	}
	// Control: the same 32 claims one after the other give one guess.
	seq := 0
	for i := range n {
		body := fmt.Sprintf(`{"isp":"alpha","customer_id":"c-10","password":"guess-%d","mac":"02:00:00:00:02:%02x"}`, i, i)
		if f.do("POST", "/v1/claims", "claim", body).Code == http.StatusUnauthorized {
			seq++
		}
	}
	if seq != 1 {
		t.Fatalf("sequential control: %d guesses verified, want 1", seq)
	}
	if guesses > 1 {
		t.Errorf("%d of %d concurrent wrong-password claims were verified (401 bad-credentials), not rate-limited (429): the back-off admits one guess", guesses, n)
	}
}

// GET …/bindings?mac= is one MAC's bindings, looked up on each access
// circuit (at most one per circuit, any ISP for the operator, the token's
// ISP's only for an ISP).
func TestBindingsOfMAC(t *testing.T) {
	f, _, st := newRealFixture(t)
	m := subscribers.MAC{2, 0, 0, 0, 0, 9}
	for _, b := range []subscribers.Binding{
		{MAC: m, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.9"), Expires: time.Now().Add(time.Hour)},
		{MAC: m, Access: "acc1", VLAN: 7, ISP: "beta", IP: netip.MustParseAddr("100.64.0.10"), Expires: time.Now().Add(time.Hour)},
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
	if bs := get("alpha", "/v1/isps/alpha/bindings?mac=02:00:00:00:00:07"); len(bs) != 0 {
		t.Errorf("no binding: %+v", bs)
	}
	if w := f.do("GET", "/v1/bindings?mac=nonsense", "operator", ""); w.Code < 400 || w.Code >= 500 {
		t.Errorf("bad MAC: %d", w.Code)
	}
}
