package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// fixture is a server over a fake Service with one token per principal.
type fixture struct {
	t      testing.TB
	svc    *fakeService
	srv    *Server
	h      http.Handler
	tokens map[string]string // principal label → token
	dir    string
	cfg    *configs.Config
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, svc: newFake(), tokens: map[string]string{}, dir: dir}
	write := func(name, label string) string {
		tok, line := auth.NewToken()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		f.tokens[label] = tok
		return p
	}
	cfg := configs.Default()
	cfg.API.OperatorTokenFile = write("operator.token", "operator")
	cfg.API.ClaimTokenFiles = []string{write("installer.token", "claim")}
	cfg.ISPs = []configs.ISP{
		{Name: "alpha", TokenFiles: []string{write("alpha-1.token", "alpha")}},
		{Name: "beta", TokenFiles: []string{write("beta-1.token", "beta"), write("beta-2.token", "rotated")}},
	}
	f.cfg = cfg
	toks, err := auth.LoadTokens(auth.TokenFilesFromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// Rotate beta-2: the file gets a new token, the old one must die.
	newTok, line := auth.NewToken()
	if err := os.WriteFile(filepath.Join(dir, "beta-2.token"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv = New(cfg.API, f.svc, toks, nil)
	f.srv.SetWebhookStatus(func(isp string) (webhooks.Status, bool) {
		return webhooks.Status{ISP: isp, URL: "https://hooks.example/" + isp}, isp == "alpha" || isp == "beta"
	})
	if _, ok := toks.Lookup(f.tokens["rotated"]); !ok {
		t.Fatal("token not loaded")
	}
	if err := toks.Reload(); err != nil {
		t.Fatal(err)
	}
	f.tokens["beta-2"] = newTok
	f.tokens["bad"] = "not-a-token-anyone-has-0123456789"
	f.h = f.srv.Handler()
	return f
}

// do runs one request through the handler.
func (f *fixture) do(method, path, who string, body string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if tok, ok := f.tokens[who]; ok {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if strings.HasSuffix(path, "/stream") || strings.Contains(path, "/stream?") {
		ctx, cancel := context.WithTimeout(r.Context(), 100*time.Millisecond)
		defer cancel()
		r = r.WithContext(ctx)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func decodeProblem(t *testing.T, w *httptest.ResponseRecorder) Problem {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q, body %s: want a problem", w.Code, ct, w.Body)
	}
	var p Problem
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	if !strings.HasPrefix(p.Type, ProblemTypePrefix) || p.Title == "" || p.Status != w.Code || p.RequestID == "" {
		t.Fatalf("problem shape: %+v (status %d)", p, w.Code)
	}
	if st, ok := ProblemTypes()[strings.TrimPrefix(p.Type, ProblemTypePrefix)]; !ok || st != p.Status {
		t.Fatalf("problem type %s with status %d", p.Type, p.Status)
	}
	return p
}

// requestFor fills a route's wildcards and gives it a valid body.
func requestFor(rt Route) (path, body string) {
	path = strings.NewReplacer("{isp}", "alpha", "{id}", "c-1", "{mac}", "02:00:00:00:00:01").Replace(rt.Path)
	switch rt.Method + " " + rt.Path {
	case "POST /v1/isps/{isp}/customers":
		body = `{"customer_id":"c-new","password":"pw"}`
	case "POST /v1/isps/{isp}/customers:import":
		body = `{"customer_id":"c-2","password_hash":"$2y$10$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC"}` + "\n"
	case "PATCH /v1/isps/{isp}/customers/{id}":
		body = `{"status":"suspended"}`
	case "POST /v1/isps/{isp}/devices":
		body = `{"mac":"02:00:00:00:00:03","customer_id":"c-1"}`
	case "POST /v1/isps/{isp}/devices:import":
		body = `{"mac":"02:00:00:00:00:04","customer_id":"c-1"}` + "\n"
	case "PATCH /v1/isps/{isp}/devices/{mac}", "PATCH /v1/devices/{mac}":
		body = `{"access":"acc0"}`
	case "POST /v1/claims":
		body = `{"isp":"alpha","customer_id":"c-1","password":"pw","mac":"02:00:00:00:00:03"}`
	case "POST /v1/devices/{mac}/move":
		body = `{"isp":"beta","customer_id":"c-77"}`
	}
	return path, body
}

// TestCrossTenantMatrix: every route × every kind of caller.
func TestCrossTenantMatrix(t *testing.T) {
	f := newFixture(t)
	callers := []string{"operator", "alpha", "beta", "claim", "none", "bad", "rotated", "beta-2"}
	for _, rt := range Routes() {
		path, body := requestFor(rt)
		for _, who := range callers {
			t.Run(rt.Method+" "+rt.Path+" as "+who, func(t *testing.T) {
				before := f.svc.callCount()
				w := f.do(rt.Method, path, who, body)
				want := "ok"
				switch {
				case who == "none" || who == "bad" || who == "rotated":
					want = "unauthorized"
				case who == "operator":
				case rt.Scope == ScopeOperator:
					want = "forbidden"
				case who == "claim":
					if rt.Scope != ScopeClaim {
						want = "forbidden"
					}
				case rt.Scope == ScopeClaim: // ISP tokens do not claim
					want = "forbidden"
				case rt.Scope == ScopeTenant && (who == "beta" || who == "beta-2"):
					want = "not-found" // alpha's path, as if alpha did not exist
				}
				if want == "ok" {
					if w.Code < 200 || w.Code > 299 {
						t.Fatalf("status %d, body %s", w.Code, w.Body)
					}
					if id := w.Header().Get("X-Request-Id"); id == "" {
						t.Fatal("no X-Request-Id")
					}
					c := f.svc.lastCall()
					if c.Actor.Kind != "" && (string(c.Actor.Kind) != map[string]string{"alpha": "isp", "beta": "isp", "beta-2": "isp", "operator": "operator", "claim": "claim"}[who] ||
						c.Actor.RequestID != w.Header().Get("X-Request-Id") || c.Actor.Name == "") {
						t.Fatalf("actor %+v for %s (request id %s)", c.Actor, who, w.Header().Get("X-Request-Id"))
					}
					if rt.Scope == ScopeTenant && c.ISP != "alpha" && c.Method != "ISPs" {
						t.Fatalf("Service called for isp %q", c.ISP)
					}
					return
				}
				p := decodeProblem(t, w)
				if p.Type != ProblemTypePrefix+want {
					t.Fatalf("got %d %s (%s), want %s", w.Code, p.Type, p.Detail, want)
				}
				// RFC 9110 §15.5.2: every 401 names its scheme; RFC 6750
				// §3.1: invalid_token when a token was presented, no
				// error code when none was.
				wantAuth := map[string]string{"none": challenge, "bad": invalidToken, "rotated": invalidToken}[who]
				if got := w.Header().Get("WWW-Authenticate"); got != wantAuth {
					t.Fatalf("%d %s: WWW-Authenticate %q, want %q", w.Code, p.Type, got, wantAuth)
				}
				if n := f.svc.callCount(); n != before {
					t.Fatalf("the Service was called (%d calls) for a refused request", n-before)
				}
				if want == "not-found" {
					// Byte for byte what an ISP that does not exist gets.
					w2 := f.do(rt.Method, strings.Replace(path, "alpha", "gamma", 1), who, body)
					p2 := decodeProblem(t, w2)
					if w2.Code != w.Code || p2.Detail != p.Detail || p2.Title != p.Title || p2.Type != p.Type {
						t.Fatalf("another ISP's path %d %+v; a missing ISP's %d %+v", w.Code, p, w2.Code, p2)
					}
				}
			})
		}
	}
}

func TestISPsScoped(t *testing.T) {
	f := newFixture(t)
	var got list[tenants.ISPInfo]
	w := f.do("GET", "/v1/isps", "beta", "")
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got.Items) != 1 || got.Items[0].Name != "beta" {
		t.Fatalf("beta sees %s", w.Body)
	}
	w = f.do("GET", "/v1/isps", "operator", "")
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got.Items) != 2 {
		t.Fatalf("operator sees %s", w.Body)
	}
	w = f.do("GET", "/v1/isps/gamma", "operator", "")
	if p := decodeProblem(t, w); w.Code != 404 || !strings.Contains(p.Detail, "gamma") {
		t.Fatalf("operator, missing ISP: %d %+v", w.Code, p)
	}
}

func TestProblemMapping(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		err    error
		status int
		slug   string
		check  func(t *testing.T, w *httptest.ResponseRecorder, p Problem)
	}{
		{tenants.ErrNotFound, 404, "not-found", nil},
		{fmt.Errorf("customer c-1 exists: %w", tenants.ErrConflict), 409, "conflict", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if !strings.Contains(p.Detail, "c-1 exists") {
				t.Errorf("detail %q", p.Detail)
			}
		}},
		{fmt.Errorf("%w: device 02:00:00:00:00:03 cannot be attached here; ask the operator", tenants.ErrDeviceTaken), 409, "device-unavailable", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if !strings.Contains(p.Detail, "ask the operator") {
				t.Errorf("detail %q: the Service's words for the caller", p.Detail)
			}
		}},
		{fmt.Errorf("%w: device_limit must be 1..64", tenants.ErrInvalid), 422, "invalid", nil},
		{tenants.ErrForbidden, 403, "forbidden", nil},
		{fmt.Errorf("customer c-9 unknown: %w", tenants.ErrBadCredentials), 403, "bad-credentials", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if p.Detail != "invalid credentials" {
				t.Errorf("bad credentials detail %q: must be one generic message", p.Detail)
			}
			// The claim token was accepted: no challenge to answer.
			if a := w.Header().Get("WWW-Authenticate"); a != "" {
				t.Errorf("bad credentials with WWW-Authenticate %q", a)
			}
		}},
		{&tenants.RateLimitError{RetryAfter: 2500 * time.Millisecond}, 429, "rate-limited", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if w.Header().Get("Retry-After") != "3" || p.RetryAfter != 3 {
				t.Errorf("Retry-After %q, retry_after %d", w.Header().Get("Retry-After"), p.RetryAfter)
			}
		}},
		{&tenants.DeviceLimitError{Limit: 1, Devices: []string{"02:00:00:00:00:01"}}, 409, "device-limit", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if p.Limit != 1 || len(p.Devices) != 1 || p.Devices[0] != "02:00:00:00:00:01" {
				t.Errorf("device limit problem %+v", p)
			}
		}},
		{fmt.Errorf("%w: m=99999", auth.ErrHashTooCostly), 422, "invalid", nil},
		{errors.New("disk on fire at /var/lib/secret"), 500, "internal", func(t *testing.T, w *httptest.ResponseRecorder, p Problem) {
			if strings.Contains(p.Detail, "disk") {
				t.Errorf("500 shows the error: %q", p.Detail)
			}
		}},
	}
	for _, c := range cases {
		f.svc.mu.Lock()
		f.svc.err = c.err
		f.svc.mu.Unlock()
		w := f.do("POST", "/v1/claims", "claim", `{"isp":"alpha","customer_id":"c-1","password":"pw","mac":"02:00:00:00:00:03"}`, "X-Request-Id", "req-42")
		p := decodeProblem(t, w)
		if w.Code != c.status || p.Type != ProblemTypePrefix+c.slug || p.RequestID != "req-42" || p.Instance != "/v1/claims" {
			t.Errorf("%v: %d %+v", c.err, w.Code, p)
			continue
		}
		if (c.status == 401) != (w.Header().Get("WWW-Authenticate") != "") {
			t.Errorf("%d with WWW-Authenticate %q: want it on a 401 only", c.status, w.Header().Get("WWW-Authenticate"))
		}
		if c.check != nil {
			c.check(t, w, p)
		}
	}
}

func TestBodies(t *testing.T) {
	f := newFixture(t)
	path := "/v1/isps/alpha/customers"
	for _, c := range []struct {
		name, body, ct string
		status         int
		detail         string
	}{
		{"unknown field", `{"customer_id":"x","colour":"red"}`, "", 400, `unknown field "colour"`},
		{"wrong type", `{"customer_id":7}`, "", 400, "customer_id"},
		{"malformed", `{"customer_id":`, "", 400, "truncated"},
		{"syntax", `{"customer_id" "x"}`, "", 400, "malformed JSON"},
		{"trailing", `{"customer_id":"x"} {"customer_id":"y"}`, "", 400, "trailing"},
		{"empty", ``, "", 400, "empty body"},
		{"not an object", `[1,2]`, "", 400, "the body: expected a JSON object, got JSON array"},
		{"null", `null`, "", 400, "send a JSON object"},
		{"invalid UTF-8", "{\"customer_id\":\"u-\xff\xfe\"}", "", 400, "not valid UTF-8"},
		{"media type", `{"customer_id":"x"}`, "text/plain", 415, "application/json"},
		{"too large", `{"customer_id":"` + strings.Repeat("a", 2<<20) + `"}`, "", 413, "over 1048576 bytes"},
	} {
		hdr := []string{}
		if c.ct != "" {
			hdr = []string{"Content-Type", c.ct}
		}
		w := f.do("POST", path, "alpha", c.body, hdr...)
		p := decodeProblem(t, w)
		if w.Code != c.status || !strings.Contains(p.Detail, c.detail) {
			t.Errorf("%s: %d %q", c.name, w.Code, p.Detail)
		}
	}
	// A good body with the JSON media type (and charset) is taken.
	w := f.do("POST", path, "alpha", `{"customer_id":"c-9","password":"pw","device_limit":2}`, "Content-Type", "application/json; charset=utf-8")
	if w.Code != 201 || w.Header().Get("Location") != "/v1/isps/alpha/customers/c-9" {
		t.Fatalf("create: %d %s %v", w.Code, w.Body, w.Header())
	}
	if in := f.svc.lastCall().Arg.(tenants.CustomerInput); in.ID != "c-9" || in.Password != "pw" || in.DeviceLimit != 2 {
		t.Fatalf("Service got %+v", in)
	}
	// Unknown routes and methods are problems too.
	if w := f.do("GET", "/v1/nothing", "operator", ""); decodeProblem(t, w).Status != 404 {
		t.Fatal("unknown path")
	}
	w = f.do("PUT", "/v1/isps/alpha/customers", "operator", "{}")
	if decodeProblem(t, w).Status != 405 || !strings.Contains(w.Header().Get("Allow"), "POST") {
		t.Fatalf("405: %d %v", w.Code, w.Header())
	}
	// A bad MAC in a path.
	if w := f.do("GET", "/v1/devices/zz", "operator", ""); decodeProblem(t, w).Status != 400 {
		t.Fatal("bad MAC")
	}
	// MACs are canonical before the Service sees them.
	f.do("GET", "/v1/devices/02-00-00-00-00-0A", "operator", "")
	if c := f.svc.lastCall(); c.Arg != "02:00:00:00:00:0a" {
		t.Fatalf("Service got MAC %v", c.Arg)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	w := f.do("GET", "/v1/stats", "operator", "", "X-Request-Id", "abc-123")
	if w.Header().Get("X-Request-Id") != "abc-123" {
		t.Fatal("request id not echoed")
	}
	w = f.do("GET", "/v1/stats", "operator", "", "X-Request-Id", "bad id\x01 with junk")
	if id := w.Header().Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("request id %q", id)
	}
	f.do("PATCH", "/v1/isps/alpha/customers/c-1", "alpha", `{"status":"suspended"}`, "X-Request-Id", "r-7")
	c := f.svc.lastCall()
	if c.Actor != (tenants.Actor{Kind: tenants.ActorISP, Name: "alpha-1", ISP: "alpha", RequestID: "r-7"}) {
		t.Fatalf("actor %+v", c.Actor)
	}
	if p := c.Arg.(tenants.CustomerPatch); p.Status == nil || *p.Status != tenants.StatusSuspended || p.Password != nil {
		t.Fatalf("patch %+v", p)
	}
}

func TestPagination(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.svc.customers["alpha"][fmt.Sprintf("p-%d", i)] = tenants.Customer{ISP: "alpha", ID: fmt.Sprintf("p-%d", i)}
	}
	var page list[tenants.Customer]
	w := f.do("GET", "/v1/isps/alpha/customers?limit=2&after=c-1", "alpha", "")
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Items) != 2 || page.Next != "p-1" {
		t.Fatalf("page: %s", w.Body)
	}
	if o := f.svc.lastCall().Opts; o != (tenants.ListOptions{After: "c-1", Limit: 2}) {
		t.Fatalf("options %+v", o)
	}
	for _, lim := range []string{"0", "-1", "1001", "x"} {
		if w := f.do("GET", "/v1/isps/alpha/customers?limit="+lim, "alpha", ""); decodeProblem(t, w).Status != 400 {
			t.Errorf("limit=%s accepted", lim)
		}
	}
	// An empty page is an empty list, not null.
	w = f.do("GET", "/v1/isps/alpha/devices?customer_id=nobody", "alpha", "")
	if !strings.Contains(w.Body.String(), `"items":[]`) {
		t.Fatalf("empty page: %s", w.Body)
	}
	if c := f.svc.lastCall(); c.Arg != "nobody" || c.ISP != "alpha" {
		t.Fatalf("devices call %+v", c)
	}
}

func TestEventsList(t *testing.T) {
	f := newFixture(t)
	for i := range 6 {
		isp := []string{"alpha", "beta"}[i%2]
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: isp, MAC: "02:00:00:00:00:01"})
	}
	var el EventList
	w := f.do("GET", "/v1/isps/beta/events?after=1&limit=2", "beta", "")
	if err := json.Unmarshal(w.Body.Bytes(), &el); err != nil || len(el.Items) != 2 || el.Items[0].Seq != 2 || el.Items[1].Seq != 4 || el.Next != "4" {
		t.Fatalf("beta events: %s", w.Body)
	}
	w = f.do("GET", "/v1/isps/beta/events?after=4", "beta", "")
	if err := json.Unmarshal(w.Body.Bytes(), &el); err != nil || len(el.Items) != 1 || el.Next != "6" {
		t.Fatalf("beta events: %s", w.Body)
	}
	w = f.do("GET", "/v1/events?after=4", "operator", "")
	if err := json.Unmarshal(w.Body.Bytes(), &el); err != nil || len(el.Items) != 2 || el.Newest != 6 || el.Missed {
		t.Fatalf("all events: %s", w.Body)
	}
	f.svc.trim(5)
	w = f.do("GET", "/v1/events?after=2", "operator", "")
	if err := json.Unmarshal(w.Body.Bytes(), &el); err != nil || !el.Missed || el.Oldest != 5 {
		t.Fatalf("trimmed: %s", w.Body)
	}
	if w := f.do("GET", "/v1/events?after=-3", "operator", ""); decodeProblem(t, w).Status != 400 {
		t.Fatal("bad after accepted")
	}
}

// TestMalformedQuery: a query string that does not parse is 400, not read
// as if the malformed pair were absent (url.Query drops it): a mangled
// after= would otherwise read the events again from the oldest kept, or
// a list from its first page.
func TestMalformedQuery(t *testing.T) {
	f := newFixture(t)
	for range 4 {
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta", MAC: "02:00:00:00:00:01"})
	}
	for _, c := range []struct{ path, who string }{
		{"/v1/isps/beta/events?after=3%&limit=1", "beta"},
		{"/v1/isps/beta/events?limit=1&after=%zz", "beta"},
		{"/v1/events?after=3%25%", "operator"},
		{"/v1/isps/beta/customers?limit=2&after=%G1", "beta"},
		{"/v1/isps/beta/events/stream?after=3%", "beta"},
		{"/v1/isps/beta/events?after=3;limit=1", "beta"},
	} {
		w := f.do("GET", c.path, c.who, "")
		if w.Code != 400 {
			t.Errorf("GET %s: status %d, body %.200s: want 400", c.path, w.Code, w.Body)
			continue
		}
		if p := decodeProblem(t, w); p.Type != ProblemTypePrefix+"bad-request" {
			t.Errorf("GET %s: %+v", c.path, p)
		}
	}
	// A well-formed query still works, and a bad one is refused only
	// after the token: no token is 401 whatever the query.
	if w := f.do("GET", "/v1/isps/beta/events?after=3&limit=1", "beta", ""); w.Code != 200 {
		t.Fatalf("good query: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/v1/isps/beta/events?after=3%", "", ""); w.Code != 401 {
		t.Fatalf("no token, bad query: %d, want 401", w.Code)
	}
}

// TestUnknownQueryParam: a query parameter the route does not take is 400
// naming it and the ones the route takes, not ignored: a typo such as
// ?afer= or ?cursor= would otherwise return the first page again. Every
// route's documented parameters still work.
func TestUnknownQueryParam(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta", MAC: "02:00:00:00:00:01"})
	}
	for _, c := range []struct{ method, path, who, want string }{
		{"GET", "/v1/isps/beta/customers?cursor=c-2", "beta", `"cursor": GET /v1/isps/{isp}/customers takes only after, limit`},
		{"GET", "/v1/isps/beta/events?afer=2", "beta", `"afer"`},
		{"GET", "/v1/events?after=1&limt=1", "operator", `"limt"`},
		{"GET", "/v1/isps/beta/devices?customer=c-1", "beta", "after, limit, customer_id"},
		{"GET", "/v1/bindings?MAC=02:00:00:00:00:01", "operator", "after, limit, mac"},
		{"GET", "/v1/isps/beta/events/stream?limit=1", "beta", "takes only after"},
		{"GET", "/v1/stats?verbose=1", "operator", "takes no query parameters"},
		{"GET", "/v1/isps/beta?after=", "beta", `"after"`},
		{"GET", "/v1/events?limit=1&limit=1000", "operator", `query parameter "limit" given 2 times`},
		{"GET", "/v1/isps/beta/customers?after=a&after=b", "beta", `"after" given 2 times`},
		{"GET", "/v1/bindings?mac=02:00:00:00:00:01&after=x", "operator", "after does not go with mac"},
	} {
		w := f.do(c.method, c.path, c.who, "")
		if w.Code != 400 {
			t.Errorf("%s %s: status %d, body %.200s: want 400", c.method, c.path, w.Code, w.Body)
			continue
		}
		if p := decodeProblem(t, w); p.Type != ProblemTypePrefix+"bad-request" || !strings.Contains(p.Detail, c.want) {
			t.Errorf("%s %s: %+v, want bad-request with %q", c.method, c.path, p, c.want)
		}
	}
	for _, c := range []struct{ path, who string }{
		{"/v1/isps/beta/customers?after=&limit=2", "beta"},
		{"/v1/isps/beta/devices?customer_id=c-1&limit=2&after=", "beta"},
		{"/v1/devices?customer_id=c-1", "operator"},
		{"/v1/isps/beta/bindings?mac=02:00:00:00:00:01&limit=5", "beta"},
		{"/v1/bindings?after=&limit=5", "operator"},
		{"/v1/isps/beta/events?after=1&limit=1", "beta"},
		{"/v1/events?after=1&limit=1", "operator"},
		{"/v1/isps", "beta"},
		{"/v1/stats", "operator"},
	} {
		if w := f.do("GET", c.path, c.who, ""); w.Code != 200 {
			t.Errorf("GET %s: %d %.200s, want 200", c.path, w.Code, w.Body)
		}
	}
}

func TestImport(t *testing.T) {
	f := newFixture(t)
	body := strings.Join([]string{
		`{"customer_id":"i-1","password":"secret-1"}`,
		``,
		`{"customer_id":"i-2","colour":"red"}`,
		`not json`,
		`{"customer_id":"c-1"}`,
		`{"customer_id":"i-3"} {"customer_id":"i-4"}`,
		`{"customer_id":"i-5","password_hash":"$2y$10$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC"}`,
		"{\"customer_id\":\"u-\xff\"}",
	}, "\n")
	w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", body, "Content-Type", "application/x-ndjson")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("import: %d %s", w.Code, w.Body)
	}
	var got []tenants.ImportResult
	dec := json.NewDecoder(w.Body)
	for dec.More() {
		var r tenants.ImportResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []struct {
		line   int
		result string
		errHas string
	}{
		{1, "created", ""}, {3, "error", `unknown field "colour"`}, {4, "error", "invalid character"},
		{5, "unchanged", ""}, {6, "error", "more than one"}, {7, "created", ""}, {8, "error", "not valid UTF-8"},
	}
	if len(got) != len(want) {
		t.Fatalf("results %+v", got)
	}
	for i, w := range want {
		if got[i].Line != w.line || got[i].Result != w.result || !strings.Contains(got[i].Error, w.errHas) {
			t.Errorf("line %d: %+v, want %+v", i, got[i], w)
		}
	}
	if got[1].CustomerID != "i-2" || got[2].CustomerID != "" {
		t.Errorf("refused lines' customers: %q (want i-2, the line names it), %q (not JSON: none)", got[1].CustomerID, got[2].CustomerID)
	}
	if c := f.svc.lastCall(); c.Actor.Kind != tenants.ActorISP || c.ISP != "alpha" {
		t.Fatalf("import call %+v", c)
	}

	// Many lines go in batches, results in line order.
	var big strings.Builder
	for i := range 1200 {
		fmt.Fprintf(&big, "{\"customer_id\":\"b-%d\"}\n", i)
	}
	calls := f.svc.callCount()
	w = f.do("POST", "/v1/isps/alpha/customers:import", "alpha", big.String())
	out := strings.Split(strings.TrimSpace(w.Body.String()), "\n")
	if len(out) != 1200 || !strings.Contains(out[0], `"line":1,`) || !strings.Contains(out[1199], `"line":1200,"customer_id":"b-1199","result":"created"`) {
		t.Fatalf("big import: %d lines, first %s last %s", len(out), out[0], out[len(out)-1])
	}
	batches := 0
	f.svc.mu.Lock()
	for _, c := range f.svc.calls[calls:] {
		if c.Method == "ImportCustomers" {
			batches++
			if n := c.Arg.(int); n > importBatch {
				t.Errorf("batch of %d", n)
			}
		}
	}
	f.svc.mu.Unlock()
	if batches < 3 || batches > 20 {
		t.Errorf("1200 lines in %d batches", batches)
	}

	// Its own limits: a line too long is one error; a body over the
	// import limit ends with an error line.
	f.srv.Limits.MaxImportLine = 128
	f.srv.Limits.MaxImportBody = 400
	long := `{"customer_id":"` + strings.Repeat("x", 200) + `"}`
	w = f.do("POST", "/v1/isps/alpha/customers:import", "alpha", long+"\n"+`{"customer_id":"i-9"}`+"\n"+strings.Repeat(`{"customer_id":"i-10"}`+"\n", 20))
	lines := strings.Split(strings.TrimSpace(w.Body.String()), "\n")
	if w.Code != 200 || !strings.Contains(lines[0], "longer than 128") || !strings.Contains(lines[1], `"i-9"`) ||
		!strings.Contains(lines[len(lines)-1], "import limit of 400 bytes") {
		t.Fatalf("limits: %d\n%s", w.Code, w.Body)
	}
	f.srv.Limits.MaxImportBody = 10
	w = f.do("POST", "/v1/isps/alpha/customers:import", "alpha", strings.Repeat("x", 100))
	if decodeProblem(t, w).Status != 413 {
		t.Fatalf("nothing read under the limit: %d %s", w.Code, w.Body)
	}
	if w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", "\n\n"); decodeProblem(t, w).Status != 400 {
		t.Fatal("empty import accepted")
	}
}

// TestImportNDJSONNamesAndBOM: application/ndjson (a common name of the
// format) is accepted as x-ndjson and jsonl are; a UTF-8 byte order mark
// at the start of the body (a spreadsheet's export) is skipped, one
// anywhere else is still a bad line.
func TestImportNDJSONNamesAndBOM(t *testing.T) {
	f := newFixture(t)
	for i, ct := range []string{"application/ndjson", "application/ndjson; charset=utf-8", "application/x-ndjson", "application/jsonl", "application/json"} {
		body := fmt.Sprintf("{\"customer_id\":\"m-%d\"}\n", i)
		w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", body, "Content-Type", ct)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"result":"created"`) {
			t.Errorf("Content-Type %s: %d %s", ct, w.Code, w.Body)
		}
	}
	// The refusal names every type taken, in its detail and Accept-Post.
	w415 := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", `{"customer_id":"m-9"}`, "Content-Type", "text/csv")
	if w415.Code != 415 {
		t.Errorf("text/csv: %d %s, want 415", w415.Code, w415.Body)
	}
	for ct := range importTypes {
		if !strings.Contains(w415.Body.String(), ct) || !strings.Contains(w415.Header().Get("Accept-Post"), ct) {
			t.Errorf("415 does not name %s: %s (Accept-Post %q)", ct, w415.Body, w415.Header().Get("Accept-Post"))
		}
	}
	// Accept-Post is a list of media types (RFC 9110 §5.6.1), nothing else.
	for _, mt := range strings.Split(w415.Header().Get("Accept-Post"), ",") {
		if _, _, err := mime.ParseMediaType(strings.TrimSpace(mt)); err != nil || !importTypes[strings.TrimSpace(mt)] {
			t.Errorf("Accept-Post %q: member %q is not one of the types taken (%v)", w415.Header().Get("Accept-Post"), mt, err)
		}
	}
	bom := "\xEF\xBB\xBF"
	body := bom + `{"customer_id":"b-1"}` + "\n" + bom + `{"customer_id":"b-2"}` + "\n"
	w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", body, "Content-Type", "application/x-ndjson")
	out := strings.Split(strings.TrimSpace(w.Body.String()), "\n")
	if w.Code != 200 || len(out) != 2 || !strings.Contains(out[0], `"line":1,"customer_id":"b-1","result":"created"`) ||
		!strings.Contains(out[1], `"line":2`) || !strings.Contains(out[1], `"result":"error"`) ||
		!strings.Contains(out[1], "byte order mark (U+FEFF)") || strings.Contains(out[1], "ï") {
		t.Errorf("BOM: %d\n%s", w.Code, w.Body)
	}
	// A request body is not an import: a byte order mark before its
	// object is refused, saying so (encoding/json alone said "invalid
	// character 'ï'", a trial).
	w = f.do("POST", "/v1/isps/alpha/customers", "alpha", bom+`{"customer_id":"b-3"}`, "Content-Type", "application/json")
	if p := decodeProblem(t, w); p.Status != 400 || !strings.Contains(p.Detail, "byte order mark (U+FEFF)") {
		t.Errorf("BOM before a body: %d %s", w.Code, w.Body)
	}
}

// TestDocsRoutes holds docs/openapi.yaml against the route table.
func TestDocsRoutes(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openAPIOperations(data)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, rt := range Routes() {
		served[rt.Method+" "+rt.Path] = true
	}
	for op := range doc {
		if !served[op] {
			t.Errorf("docs/openapi.yaml describes %s, which is not served", op)
		}
	}
	for op := range served {
		if !doc[op] {
			t.Errorf("%s is served but not in docs/openapi.yaml", op)
		}
	}
	// Each operation takes the query parameters it documents, no other.
	query := openAPIQueryParams(data)
	for _, rt := range Routes() {
		op := rt.Method + " " + rt.Path
		if got, want := slices.Sorted(slices.Values(rt.Query)), slices.Sorted(slices.Values(query[op])); !slices.Equal(got, want) {
			t.Errorf("%s takes query parameters %v, docs/openapi.yaml says %v", op, got, want)
		}
	}
	// docs/API.md has a curl example for every route.
	md, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range Routes() {
		head := "### " + rt.Method + " " + rt.Path
		i := bytes.Index(md, []byte(head+"\n"))
		if i < 0 {
			t.Errorf("docs/API.md has no section %q", head)
			continue
		}
		sec := md[i+len(head):]
		if j := bytes.Index(sec, []byte("\n### ")); j >= 0 {
			sec = sec[:j]
		}
		if !bytes.Contains(sec, []byte("curl ")) {
			t.Errorf("docs/API.md %q has no curl example", head)
		}
	}
}

// An import line that is not a JSON object is refused in the API's words,
// not Go's (before: "cannot unmarshal array into Go value of type
// tenants.CustomerInput"; found by a new-user trial).
func TestImportLineErrorWords(t *testing.T) {
	for line, want := range map[string]string{
		`[1,2]`:                        "the line: expected a JSON object, got JSON array",
		`{"customer_id":1}`:            "customer_id: expected a string, got JSON number",
		`{"customer_id":"c","x":1}`:    `unknown field "x" (unknown fields are refused)`,
		`{"customer_id":"c","device_l`: "truncated JSON",
		` null `:                       "the line is JSON null: send a JSON object",
	} {
		_, err := decodeLine[tenants.CustomerInput]([]byte(line))
		if err == nil || err.Error() != want || strings.Contains(err.Error(), "Go value") {
			t.Errorf("%s: %v, want %q", line, err, want)
		}
	}
}

// A member name given twice, or not exactly one of the body's field names,
// is 400 naming it (encoding/json alone matches names case-insensitively
// and keeps the last duplicate: found by a new-user trial); so is an
// import line's. Exact names still work.
func TestBodyKeysStrict(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ body, want string }{
		{`{"customer_id":"n-3","customer_id":"n-4"}`, `field "customer_id" given twice`},
		{`{"customer_id":"n-5","Device_Limit":2}`, `unknown field "Device_Limit" (field names are case-sensitive: "device_limit")`},
		{`{"Customer_ID":"n-6"}`, `"customer_id"`},
	} {
		w := f.do("POST", "/v1/isps/beta/customers", "beta", c.body)
		if w.Code != 400 {
			t.Errorf("%s: status %d, body %.200s: want 400", c.body, w.Code, w.Body)
			continue
		}
		if p := decodeProblem(t, w); p.Type != ProblemTypePrefix+"bad-request" || !strings.Contains(p.Detail, c.want) {
			t.Errorf("%s: %+v, want bad-request with %q", c.body, p, c.want)
		}
	}
	if w := f.do("POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"n-7","device_limit":2}`); w.Code != 201 {
		t.Errorf("exact names: %d %s", w.Code, w.Body)
	}
	if _, err := decodeLine[tenants.CustomerInput]([]byte(`{"customer_id":"a","customer_id":"b"}`)); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("import line with a duplicate: %v", err)
	}
}

// A path not in canonical form is a 404 problem naming the canonical
// one, not ServeMux's redirect with an HTML body (found by a new-user
// trial: //v1/isps answered 307).
func TestNonCanonicalPath(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"//v1/isps", "/v1/isps/beta//customers", "/v1/isps/", "/v1/./isps"} {
		w := f.do("GET", p, "operator", "")
		if w.Code != 404 || w.Header().Get("Location") != "" {
			t.Errorf("%s: %d, Location %q; want 404 without a redirect", p, w.Code, w.Header().Get("Location"))
			continue
		}
		if pr := decodeProblem(t, w); pr.Type != ProblemTypePrefix+"not-found" || !strings.Contains(pr.Detail, "not a canonical path") {
			t.Errorf("%s: %+v", p, pr)
		}
	}
	if w := f.do("GET", "/v1/isps", "operator", ""); w.Code != 200 {
		t.Errorf("/v1/isps: %d", w.Code)
	}
}

// Attaching a device already attached to that customer answers 200 with
// it, not 201: nothing was created (a trial's retried attaches all
// answered 201).
func TestAttachAgainIs200(t *testing.T) {
	f := newFixture(t)
	body := `{"mac":"02:00:00:00:00:07","customer_id":"c-1"}`
	if w := f.do("POST", "/v1/isps/beta/devices", "beta", body); w.Code != 201 {
		t.Fatalf("first attach: %d %s", w.Code, w.Body)
	}
	f.svc.mu.Lock()
	f.svc.devices["02:00:00:00:00:07"] = tenants.Device{MAC: "02:00:00:00:00:07", ISP: "beta", CustomerID: "c-1", Source: "api"}
	f.svc.mu.Unlock()
	w := f.do("POST", "/v1/isps/beta/devices", "beta", body)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"customer_id":"c-1"`) || strings.Contains(w.Body.String(), "Unchanged") {
		t.Errorf("attach again: %d %s, want 200 with the device", w.Code, w.Body)
	}
}
