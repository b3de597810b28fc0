package portal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

const host = "portal.example.net"

// writeCert writes a fresh self-signed ECDSA pair for cn to certFile and
// keyFile and returns its serial number.
func writeCert(t *testing.T, certFile, keyFile, cn string) *big.Int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return serial
}

// fakeDir maps source addresses to subscribers.
type fakeDir struct {
	mu      sync.Mutex
	subs    map[netip.Addr]Subscriber
	wait    chan struct{} // if set, Lookup blocks until it is closed
	in      chan struct{} // if set, Lookup signals here first
	retries []Subscriber  // RetryHandover's calls (it answers true)
}

func (d *fakeDir) RetryHandover(sub Subscriber) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.retries = append(d.retries, sub)
	return true
}

func (d *fakeDir) retried() []Subscriber {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Subscriber(nil), d.retries...)
}

func (d *fakeDir) Lookup(_, remote netip.AddrPort) (Subscriber, bool) {
	a := remote.Addr()
	if d.in != nil {
		d.in <- struct{}{}
	}
	if d.wait != nil {
		<-d.wait
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.subs[a]
	return s, ok
}

func (d *fakeDir) set(s Subscriber) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subs[s.Addr] = s
}

// fakeClaimer records claims and answers err.
type fakeClaimer struct {
	mu     sync.Mutex
	err    error
	got    []tenants.ClaimRequest
	actors []tenants.Actor
}

func (c *fakeClaimer) Claim(_ context.Context, a tenants.Actor, r tenants.ClaimRequest) (tenants.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, r)
	c.actors = append(c.actors, a)
	if c.err != nil {
		return tenants.Device{}, c.err
	}
	return tenants.Device{MAC: r.MAC, ISP: r.ISP, CustomerID: r.CustomerID, Source: tenants.SourceClaim}, nil
}

func (c *fakeClaimer) calls() []tenants.ClaimRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tenants.ClaimRequest(nil), c.got...)
}

var (
	addrA = netip.MustParseAddr("100.64.0.10")
	addrB = netip.MustParseAddr("100.64.0.11")
	macA  = uint64(0x02_00_00_00_00_0a)
	macB  = uint64(0x02_00_00_00_00_0b)
	isps  = []ISP{
		{Name: "alpha", DisplayName: "Alpha Net", Description: "Fibre up to 1 Gbit/s, no contract."},
		{Name: "beta", DisplayName: "Beta & Co", Description: "Cheap <and> cheerful."},
	}
)

type rig struct {
	t    *testing.T
	srv  *Server
	h    http.Handler
	dir  *fakeDir
	cl   *fakeClaimer
	cert string
	key  string
}

func newRig(t *testing.T, claims Claimer) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"),
		dir: &fakeDir{subs: map[netip.Addr]Subscriber{}}}
	writeCert(t, r.cert, r.key, "one")
	if claims == nil {
		r.cl = &fakeClaimer{}
		claims = r.cl
	}
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Expires: time.Now().Add(90 * time.Second)})
	r.dir.set(Subscriber{MAC: macB, Access: "port2", Addr: addrB, Expires: time.Now().Add(90 * time.Second)})
	srv, err := New(Config{Hostname: host, ISPs: isps, CertFile: r.cert, KeyFile: r.key, HandoverHint: 40 * time.Second}, r.dir, claims)
	if err != nil {
		t.Fatal(err)
	}
	r.srv, r.h = srv, srv.Handler()
	return r
}

// req is one request to the HTTPS handler.
type req struct {
	method, target string
	from           netip.Addr
	form           url.Values
	cookie         *http.Cookie
	hdr            map[string]string
}

func (r *rig) do(q req) *httptest.ResponseRecorder {
	r.t.Helper()
	var body io.Reader
	if q.form != nil {
		body = strings.NewReader(q.form.Encode())
	}
	if q.method == "" {
		q.method = http.MethodGet
	}
	hr := httptest.NewRequest(q.method, "https://"+host+q.target, body)
	hr.RemoteAddr = netip.AddrPortFrom(q.from, 50000).String()
	if q.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if q.cookie != nil {
		hr.AddCookie(q.cookie)
	}
	for k, v := range q.hdr {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, hr)
	return w
}

var sameOrigin = map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://" + host}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

// open GETs the page from addr: its cookie and form token.
func (r *rig) open(from netip.Addr) (*http.Cookie, string) {
	r.t.Helper()
	w := r.do(req{target: "/", from: from})
	if w.Code != http.StatusOK {
		r.t.Fatalf("GET /: %d %s", w.Code, w.Body)
	}
	return r.cookieAndToken(w, nil)
}

func (r *rig) cookieAndToken(w *httptest.ResponseRecorder, c *http.Cookie) (*http.Cookie, string) {
	r.t.Helper()
	for _, ck := range w.Result().Cookies() {
		if ck.Name == cookieName {
			c = ck
		}
	}
	m := tokenRE.FindStringSubmatch(w.Body.String())
	if c == nil || m == nil {
		r.t.Fatalf("no cookie or token in %d %s", w.Code, w.Body)
	}
	return c, html.UnescapeString(m[1])
}

func claimForm(tok, isp, id, pw string) url.Values {
	return url.Values{"token": {tok}, "isp": {isp}, "customer_id": {id}, "password": {pw}}
}

func TestRedirectHandler(t *testing.T) {
	r := newRig(t, nil)
	h := r.srv.RedirectHandler()
	for _, target := range []string{"http://example.com/", "http://connectivitycheck.gstatic.com/generate_204", "http://" + host + "/claim?x=1"} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(m, target, nil))
			if w.Code != http.StatusFound || w.Header().Get("Location") != "https://"+host+"/" || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: %d %v", m, target, w.Code, w.Header())
			}
		}
	}
	// A form posted over HTTP: refused, its body never read.
	body := &spyBody{r: strings.NewReader("password=secret")}
	hr := httptest.NewRequest(http.MethodPost, "http://"+host+"/claim", nil)
	hr.Body, hr.ContentLength = body, 15
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	if w.Code != http.StatusForbidden || body.read || w.Header().Get("Connection") != "close" {
		t.Errorf("POST over HTTP: %d, body read %v, %v", w.Code, body.read, w.Header())
	}
	if !strings.Contains(w.Body.String(), "only accepted over HTTPS") {
		t.Errorf("POST over HTTP: %q", w.Body)
	}
	if st := r.srv.Stats(); st.Redirects != 6 || st.InsecureRefused != 1 {
		t.Errorf("stats %+v", st)
	}
}

type spyBody struct {
	r    io.Reader
	read bool
}

func (b *spyBody) Read(p []byte) (int, error) { b.read = true; return b.r.Read(p) }
func (b *spyBody) Close() error               { return nil }

func TestPage(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []string{"/", "/generate_204", "/hotspot-detect.html", "/some/where?q=1"} {
		w := r.do(req{target: target, from: addrA})
		b := w.Body.String()
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d", target, w.Code)
		}
		for _, want := range []string{
			`<html lang="en">`, "<main>", "<fieldset", "<legend>Internet provider</legend>",
			"Alpha Net", "Fibre up to 1 Gbit/s, no contract.", "Beta &amp; Co", "Cheap &lt;and&gt; cheerful.",
			`<input type="radio" id="isp-0" name="isp" value="alpha" required>`, `<label for="isp-0">`, `<label for="isp-1">`,
			`<label for="customer_id">Customer ID</label>`, `autocomplete="username"`,
			`<label for="password">Password</label>`, `type="password" id="password" name="password" autocomplete="current-password"`,
			`type="hidden" name="token"`, `<button type="submit">`, `action="/claim"`, `method="post"`,
			"This device is not yet connected to an Internet provider. Choose yours and sign in with the customer ID and password it gave you.",
			"within about 40 seconds", `href="/portal.css"`,
		} {
			if !strings.Contains(b, want) {
				t.Errorf("%s: page lacks %q", target, want)
			}
		}
		if strings.Contains(strings.ToLower(b), "<script") || strings.Contains(b, "role=\"alert\"") {
			t.Errorf("%s: script or an error summary on a clean page", target)
		}
		hd := w.Header()
		if hd.Get("Content-Security-Policy") != csp || !strings.Contains(csp, "frame-ancestors 'none'") ||
			hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Referrer-Policy") != "no-referrer" ||
			hd.Get("Cache-Control") != "no-store" || hd.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: headers %v", target, hd)
		}
		sc := hd.Get("Set-Cookie")
		for _, want := range []string{cookieName + "=", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"} {
			if !strings.Contains(sc, want) {
				t.Errorf("%s: Set-Cookie %q lacks %q", target, sc, want)
			}
		}
	}
	// The cookie is kept: no new one when the browser sends it.
	c, _ := r.open(addrA)
	if w := r.do(req{target: "/", from: addrA, cookie: c}); w.Header().Get("Set-Cookie") != "" {
		t.Errorf("cookie set again: %q", w.Header().Get("Set-Cookie"))
	}
	w := r.do(req{target: "/portal.css", from: addrA})
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(w.Body.String(), "fieldset") {
		t.Errorf("css: %d %v", w.Code, w.Header())
	}
	// Another host name: sent to the portal's.
	hr := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	hr.RemoteAddr = addrA.String() + ":1"
	rw := httptest.NewRecorder()
	r.h.ServeHTTP(rw, hr)
	if rw.Code != http.StatusFound || rw.Header().Get("Location") != "https://"+host+"/" {
		t.Errorf("other host: %d %v", rw.Code, rw.Header())
	}
}

func TestClaimFlow(t *testing.T) {
	r := newRig(t, nil)
	c, tok := r.open(addrA)
	f := claimForm(tok, "beta", "c-42", "s3cret")
	f.Set("mac", "02:00:00:00:00:0b") // another subscriber's: ignored
	w := r.do(req{method: http.MethodPost, target: "/claim?mac=02:00:00:00:00:0b", from: addrA, form: f, cookie: c, hdr: sameOrigin})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/done" {
		t.Fatalf("claim: %d %v %s", w.Code, w.Header(), w.Body)
	}
	got := r.cl.calls()
	want := tenants.ClaimRequest{ISP: "beta", CustomerID: "c-42", Password: "s3cret", MAC: "02:00:00:00:00:0a", Access: "port1", Circuit: "access port1"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	if a := r.cl.actors[0]; a.Kind != tenants.ActorPortal || a.Name != "portal" || a.RequestID == "" {
		t.Errorf("actor %+v", a)
	}
	// /done before the Directory shows the claim: the claim just made.
	w = r.do(req{target: "/done", from: addrA, cookie: c})
	b := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(b, "You chose Beta &amp; Co. This device will switch to Beta &amp; Co within about 40 seconds") ||
		!strings.Contains(b, `<meta http-equiv="refresh" content="5; url=/done">`) || !strings.Contains(b, "You can close this page.") {
		t.Errorf("done: %d %s", w.Code, b)
	}
	// The Directory's view: chosen, then switched.
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "beta"})
	if w := r.do(req{target: "/", from: addrA}); !strings.Contains(w.Body.String(), "You chose Beta &amp; Co.") || strings.Contains(w.Body.String(), "<form") ||
		!strings.Contains(w.Body.String(), `content="5; url=/done"`) {
		t.Errorf("page while switching (it reloads /done: / would show the move form once switched): %s", w.Body)
	}
	// While it switches: the page says it may not load for a while (a
	// trial's reload in the gap ended on the browser's error page), and
	// offers to stop reloading (a screen reader read it again at every
	// reload); ?reload=off is the same page without the reload.
	if b := r.do(req{target: "/done", from: addrA}).Body.String(); !strings.Contains(b, "may be without a connection for a little while") ||
		!strings.Contains(b, `<a href="/done?reload=off">Stop reloading it</a>`) {
		t.Errorf("done while switching: %s", b)
	}
	if b := r.do(req{target: "/done?reload=off", from: addrA}).Body.String(); strings.Contains(b, "refresh") || strings.Contains(b, "Stop reloading") ||
		!strings.Contains(b, "You chose Beta &amp; Co.") || !strings.Contains(b, `<a href="/done?reload=off">Check again</a>`) {
		t.Errorf("done?reload=off while switching: %s", b)
	}
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "beta"})
	if w := r.do(req{target: "/done", from: addrA}); !strings.Contains(w.Body.String(), "This device is connected to Beta &amp; Co.") ||
		strings.Contains(w.Body.String(), "refresh") {
		t.Errorf("done when switched: %s", w.Body)
	}
	// A device of the operator's configuration: no form to move it, which
	// a claim would refuse after the password (a portal trial).
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "beta", Fixed: true})
	if b := r.do(req{target: "/", from: addrA}).Body.String(); strings.Contains(b, "<form") || !strings.Contains(b, "cannot be changed on this page") {
		t.Errorf("a configuration device's page: %s", b)
	}
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, ISP: "beta"})
	// /done for a device that never claimed: the form.
	if w := r.do(req{target: "/done", from: addrB}); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Errorf("done unclaimed: %d %v", w.Code, w.Header())
	}
	if st := r.srv.Stats(); st.ClaimsOK != 1 || st.Pages == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestClaimErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		text   string
		header string
	}{
		{"bad credentials", tenants.ErrBadCredentials, http.StatusForbidden, "The customer ID or password is not right. Check them and try again.", ""},
		{"rate limited", &tenants.RateLimitError{RetryAfter: 7200 * time.Millisecond}, http.StatusTooManyRequests, "Too many attempts. Wait 8 seconds and try again.", "8"},
		// Two devices claiming one customer at once (a trial): the second
		// was told of "too many attempts" on its first.
		{"busy", &tenants.RateLimitError{RetryAfter: time.Second, Busy: true}, http.StatusTooManyRequests, "Another device is signing in with this customer right now. Wait 1 second and try again.", "1"},
		{"device limit", &tenants.DeviceLimitError{Limit: 1, Devices: []string{"02:00:00:00:00:99"}, Replaceable: []string{"02:00:00:00:00:99"}}, http.StatusConflict,
			"This customer already has 1 device connected, the most it may. To connect this one, choose a device it replaces (that device loses its connection at Beta &amp; Co)", ""},
		{"invalid", tenants.ErrInvalid, http.StatusBadRequest, "The details sent cannot be used.", ""},
		{"internal", errors.New("disk on fire"), http.StatusInternalServerError, "Something went wrong on our side. Try again in a minute.", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.cl.err = tc.err
			c, tok := r.open(addrA)
			w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-42", "hunter2-secret"), cookie: c, hdr: sameOrigin})
			b := w.Body.String()
			if w.Code != tc.code || !strings.Contains(b, tc.text) || w.Header().Get("Retry-After") != tc.header {
				t.Fatalf("%d %v %s", w.Code, w.Header(), b)
			}
			if !strings.Contains(b, `role="alert"`) || !strings.Contains(b, `value="c-42"`) || strings.Contains(b, "hunter2") ||
				!strings.Contains(b, `value="beta" required checked`) {
				t.Errorf("form again: %s", b)
			}
			if tc.code == http.StatusForbidden && (!strings.Contains(b, `<a href="#customer_id">`) || !strings.Contains(b, `aria-invalid="true" aria-describedby="password-error"`)) {
				t.Errorf("error summary not linked to the fields: %s", b)
			}
			// The form again carries a token that works.
			_, tok2 := r.cookieAndToken(w, c)
			r.cl.err = nil
			if w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok2, "beta", "c-42", "x"), cookie: c, hdr: sameOrigin}); w.Code != http.StatusSeeOther {
				t.Errorf("retry: %d", w.Code)
			}
		})
	}
}

// TestClaimNever401: no answer to a claim is 401. A wrong customer ID or
// password was 401 without WWW-Authenticate, which RFC 9110 §15.5.2
// requires of a 401; a form's credentials are no HTTP authentication
// scheme a browser could answer a challenge with, so it is 403 (§15.5.4:
// credentials given and insufficient). Every refusal the Claimer can
// return is tried.
func TestClaimNever401(t *testing.T) {
	for _, err := range []error{tenants.ErrBadCredentials, tenants.ErrRateLimited, tenants.ErrDeviceLimit, tenants.ErrSuspended,
		tenants.ErrConflict, tenants.ErrInvalid, tenants.ErrForbidden, tenants.ErrNotFound, tenants.ErrDeviceTaken, tenants.ErrBlocked} {
		r := newRig(t, nil)
		r.cl.err = err
		c, tok := r.open(addrA)
		w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-42", "pw"), cookie: c, hdr: sameOrigin})
		if w.Code == http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("%v: %d, WWW-Authenticate %q: want no 401 and no challenge", err, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
}

func TestFormValidation(t *testing.T) {
	r := newRig(t, nil)
	c, tok := r.open(addrA)
	w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "gamma", "", ""), cookie: c, hdr: sameOrigin})
	b := w.Body.String()
	if w.Code != http.StatusBadRequest || len(r.cl.calls()) != 0 {
		t.Fatalf("%d, %d claims", w.Code, len(r.cl.calls()))
	}
	for _, want := range []string{"<title>Error: Choose your Internet provider</title>", `<a href="#isp-0">Choose your Internet provider.</a>`, `<a href="#customer_id">Enter your customer ID.</a>`,
		`<a href="#password">Enter your password.</a>`, `id="customer_id-error"`, `aria-describedby="isp-error"`} {
		if !strings.Contains(b, want) {
			t.Errorf("lacks %q", want)
		}
	}
	// A body over the cap.
	f := claimForm(tok, "beta", "c-1", strings.Repeat("x", 9000))
	if w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: f, cookie: c, hdr: sameOrigin}); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("big body: %d", w.Code)
	}
}

func TestCrossOrigin(t *testing.T) {
	r := newRig(t, nil)
	c, tok := r.open(addrA)
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Origin": "https://evil.example"}, // an old browser: Origin only
		{"Sec-Fetch-Site": "same-site"},
	} {
		w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-1", "pw"), cookie: c, hdr: hdr})
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "This form was sent from another site, so it was refused.") {
			t.Errorf("%v: %d %s", hdr, w.Code, w.Body)
		}
	}
	if n := len(r.cl.calls()); n != 0 {
		t.Errorf("%d claims", n)
	}
	if st := r.srv.Stats(); st.CrossOrigin != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestToken(t *testing.T) {
	r := newRig(t, nil)
	cA, tokA := r.open(addrA)
	cB, tokB := r.open(addrB)
	post := func(from netip.Addr, c *http.Cookie, tok string) int {
		return r.do(req{method: http.MethodPost, target: "/claim", from: from, form: claimForm(tok, "beta", "c-1", "pw"), cookie: c, hdr: sameOrigin}).Code
	}
	cases := []struct {
		name string
		code int
	}{
		{"no cookie", post(addrA, nil, tokA)},
		{"no token", post(addrA, cA, "")},
		{"B's cookie and token from A's address", post(addrA, cB, tokB)},
		{"A's token with B's cookie", post(addrA, cB, tokA)},
		{"garbage token", post(addrA, cA, tokA[:10]+"AAAA")},
	}
	for _, tc := range cases {
		if tc.code != http.StatusForbidden {
			t.Errorf("%s: %d", tc.name, tc.code)
		}
	}
	w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, cookie: cA, form: url.Values{}, hdr: sameOrigin})
	if !strings.Contains(w.Body.String(), "This form has expired. Open the page again and retry.") {
		t.Errorf("expired page: %s", w.Body)
	}
	// Without the cookie the form did not expire: the browser sent none
	// (a trial's curl without a cookie jar was told it had expired, and
	// opening the page again, as told, could never help).
	w = r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tokA, "beta", "c-1", "pw"), hdr: sameOrigin})
	if b := w.Body.String(); w.Code != http.StatusForbidden || !strings.Contains(b, "Your browser sent this form without the cookie") || strings.Contains(b, "expired") {
		t.Errorf("no cookie page: %d %s", w.Code, b)
	}
	if n := len(r.cl.calls()); n != 0 {
		t.Errorf("%d claims", n)
	}
	if st := r.srv.Stats(); st.BadToken != uint64(len(cases))+2 {
		t.Errorf("stats %+v", st)
	}
	if post(addrA, cA, tokA) != http.StatusSeeOther || post(addrB, cB, tokB) != http.StatusSeeOther {
		t.Error("own tokens refused")
	}
}

func TestUnknownSource(t *testing.T) {
	r := newRig(t, nil)
	c, tok := r.open(addrA)
	stranger := netip.MustParseAddr("192.0.2.1")
	w := r.do(req{target: "/", from: stranger})
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "This page is only for devices joining this network through it.") ||
		strings.Contains(w.Body.String(), "<form") || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("GET: %d %s", w.Code, w.Body)
	}
	if w := r.do(req{method: http.MethodPost, target: "/claim", from: stranger, form: claimForm(tok, "beta", "c-1", "pw"), cookie: c, hdr: sameOrigin}); w.Code != http.StatusForbidden {
		t.Errorf("POST: %d", w.Code)
	}
	if n := len(r.cl.calls()); n != 0 {
		t.Errorf("%d claims", n)
	}
	if st := r.srv.Stats(); st.UnknownSource != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestNew(t *testing.T) {
	r := newRig(t, nil)
	for _, cfg := range []Config{
		{Hostname: "", ISPs: isps},
		{Hostname: "a/b", ISPs: isps},
		{Hostname: "u@h", ISPs: isps},
		{Hostname: host},
		{Hostname: host, ISPs: []ISP{{Name: "a"}, {Name: "a"}}},
		{Hostname: host, ISPs: isps, CertFile: r.cert, KeyFile: r.cert}, // key file holds a certificate
	} {
		if cfg.CertFile == "" {
			cfg.CertFile, cfg.KeyFile = r.cert, r.key
		}
		if _, err := New(cfg, r.dir, r.cl); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	s, err := New(Config{Hostname: "portal.example.net:8443", ISPs: []ISP{{Name: "solo"}}, CertFile: r.cert, KeyFile: r.key}, r.dir, r.cl)
	if err != nil || s.UserPortalURL() != "https://portal.example.net:8443/" || s.cfg.ISPs[0].DisplayName != "solo" {
		t.Errorf("%v %v", s, err)
	}
}

// A device that chose an ISP and is back in the walled garden because
// the ISP refused it, or did not answer: the page (/ and /done) says so
// plainly, names the ISP and the device's MAC, tells the user to contact
// the ISP and that the device tries again by itself. Before, it said the
// device would switch within 40 seconds, for ever. (It holds the claim
// form: TestHandoverFailedReclaim; so it does not reload by itself.)
func TestHandoverFailedPage(t *testing.T) {
	r := newRig(t, nil)
	for _, tc := range []struct{ why, says string }{
		{HandoverRefused, "but Alpha Net refused it: Alpha Net has not (yet) set up service for this device."},
		{HandoverUnanswered, "but Alpha Net did not answer when this device asked it for service."},
	} {
		r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", HandoverFailed: tc.why})
		for _, target := range []string{"/", "/done"} {
			w := r.do(req{target: target, from: addrA})
			b := w.Body.String()
			for _, want := range []string{
				"Alpha Net has not connected this device yet", tc.says,
				"Contact Alpha Net and tell them this device is not getting service. Its hardware (MAC) address is 02:00:00:00:00:0a.",
				"This device tries again by itself within about 40 seconds",
			} {
				if w.Code != http.StatusOK || !strings.Contains(b, html.EscapeString(want)) {
					t.Errorf("%s %s: %d, page lacks %q:\n%s", tc.why, target, w.Code, want, b)
				}
			}
			if strings.Contains(b, `http-equiv="refresh"`) || strings.Contains(b, "will switch") {
				t.Errorf("%s %s: a refresh (it would erase the form's input), or the switching page:\n%s", tc.why, target, b)
			}
		}
	}
}

// The failure page names the customer ID the claim gave and fills the
// form with it, so a user who mistyped it sees so and corrects it in
// place. Before, it named only the ISP and the form's customer ID was
// empty: the user could not tell a typo from the ISP's mistake.
func TestHandoverFailedShowsCustomerID(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", ClaimedCustomerID: "c-4O2", HandoverFailed: HandoverRefused})
	for _, target := range []string{"/", "/done"} {
		w := r.do(req{target: target, from: addrA})
		b := w.Body.String()
		for _, want := range []string{
			html.EscapeString("You chose Alpha Net with customer ID c-4O2 and this device tried to switch to it, but Alpha Net refused it"),
			`value="c-4O2"`,
		} {
			if w.Code != http.StatusOK || !strings.Contains(b, want) {
				t.Errorf("%s: %d, page lacks %q:\n%s", target, w.Code, want, b)
			}
		}
	}
	// Unknown: the sentence as before, the field empty.
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", HandoverFailed: HandoverRefused})
	if b := r.do(req{target: "/", from: addrA}).Body.String(); !strings.Contains(b, html.EscapeString("You chose Alpha Net and this device")) {
		t.Errorf("no customer ID known:\n%s", b)
	}
}

// A device back in the walled garden because its ISP refused it (a wrong
// ISP chosen, or a mistyped customer ID its ISP's server does not know)
// is offered the claim form on that page (/ and /done), its ISP checked,
// to claim again with another customer ID or ISP: the same POST /claim,
// its token bound to the MAC and the browser's nonce, the Claimer's
// errors and limits answered on the failure page again. A successful one
// goes to /done, which shows the new claim switching. Before, the failure
// page had no form: nothing to correct a wrong choice with but waiting
// for the operator.
func TestHandoverFailedReclaim(t *testing.T) {
	r := newRig(t, nil)
	failed := Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", HandoverFailed: HandoverRefused, Retry: time.Now().Add(10 * time.Second)}
	r.dir.set(failed)
	w := r.do(req{target: "/", from: addrA})
	b := w.Body.String()
	c, tok := r.cookieAndToken(w, nil)
	for _, want := range []string{
		"Alpha Net has not connected this device yet", `action="/claim"`, `value="alpha" required checked>`, `value="beta" required>`,
		`<label for="customer_id">Customer ID</label>`, `type="password" id="password"`, "Sign in again",
		"Chose the wrong provider, or mistyped the customer ID? Choose your provider and sign in again here: this device then switches to it within about 40 seconds.",
		"This page does not update by itself.", `<a href="/done">Check again</a>`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("failure page lacks %q:\n%s", want, b)
		}
	}
	// /done offers it too, with the browser's cookie kept.
	w = r.do(req{target: "/done", from: addrA, cookie: c})
	if _, tok2 := r.cookieAndToken(w, c); w.Header().Get("Set-Cookie") != "" || tok2 != tok {
		t.Errorf("/done: cookie set again (%q) or another token", w.Header().Get("Set-Cookie"))
	}
	post := func(from netip.Addr, c *http.Cookie, tok, isp, id string) *httptest.ResponseRecorder {
		return r.do(req{method: http.MethodPost, target: "/claim", from: from, form: claimForm(tok, isp, id, "pw-2"), cookie: c, hdr: sameOrigin})
	}
	// The form's protections: another device's address, no cookie.
	if w := post(addrB, c, tok, "alpha", "c-43"); w.Code != http.StatusForbidden {
		t.Errorf("A's failure-page token from B's address: %d", w.Code)
	}
	if w := post(addrA, nil, tok, "alpha", "c-43"); w.Code != http.StatusForbidden {
		t.Errorf("no cookie: %d", w.Code)
	}
	// The Claimer's refusals: the failure page again, with the problem.
	for _, tc := range []struct {
		err  error
		code int
		text string
	}{
		{tenants.ErrBadCredentials, http.StatusForbidden, "The customer ID or password is not right."},
		{&tenants.RateLimitError{RetryAfter: 3 * time.Second}, http.StatusTooManyRequests, "Too many attempts. Wait 3 seconds and try again."},
	} {
		r.cl.err = tc.err
		w := post(addrA, c, tok, "alpha", "c-43")
		b := w.Body.String()
		if w.Code != tc.code || !strings.Contains(b, tc.text) || !strings.Contains(b, `role="alert"`) ||
			!strings.Contains(b, "Alpha Net has not connected this device yet") || !strings.Contains(b, `value="c-43"`) || strings.Contains(b, "pw-2") {
			t.Errorf("%v: %d\n%s", tc.err, w.Code, b)
		}
		if _, tok2 := r.cookieAndToken(w, c); tok2 != tok {
			t.Errorf("%v: the form again has another token", tc.err)
		}
	}
	r.cl.err = nil
	if w := post(addrA, c, tok, "alpha", "c-43"); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/done" {
		t.Fatalf("re-claim: %d %v %s", w.Code, w.Header(), w.Body)
	}
	got := r.cl.calls()
	want := tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-43", Password: "pw-2", MAC: "02:00:00:00:00:0a", Access: "port1", Circuit: "access port1"}
	if len(got) != 3 || got[2] != want {
		t.Fatalf("claims %+v, want the last %+v", got, want)
	}
	// Another ISP: the Directory then shows the new claim switching.
	if w := post(addrA, c, tok, "beta", "b-7"); w.Code != http.StatusSeeOther {
		t.Fatalf("re-claim at beta: %d %s", w.Code, w.Body)
	}
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "beta"})
	w = r.do(req{target: "/done", from: addrA, cookie: c})
	if b := w.Body.String(); !strings.Contains(b, "You chose Beta &amp; Co. This device will switch to Beta &amp; Co within about 40 seconds") ||
		strings.Contains(b, "has not connected") {
		t.Errorf("done after the re-claim: %s", b)
	}
}

// A device back in the walled garden whose user had its ISP fix it signs
// in again from the failure page with the same ISP and customer ID (the
// page says it may): the claim, its password checked as any, asks the
// Directory for the handover's retry, and /done shows the device asking
// its ISP again (within the retry's time, T1 and a DORA; not "will
// switch": the ISP may still refuse), not the failure again, until the
// retry's outcome is known: failed again, the failure
// page. A refused claim, or one of a device not back in the garden, asks
// for none. Before, the claim was all: the Directory still gave the
// failure, the failure page came back, and the device waited a lease time.
func TestHandoverFailedSameReclaimRetries(t *testing.T) {
	r := newRig(t, nil)
	failed := Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", ClaimedCustomerID: "c-43",
		HandoverFailed: HandoverRefused, Retry: time.Now().Add(10 * time.Minute)}
	r.dir.set(failed)
	w := r.do(req{target: "/", from: addrA})
	c, tok := r.cookieAndToken(w, nil)
	if want := "Has Alpha Net fixed it already? Sign in again here with the same details: this device then tries again within about 40 seconds."; !strings.Contains(w.Body.String(), want) {
		t.Errorf("failure page lacks %q:\n%s", want, w.Body)
	}
	post := func() *httptest.ResponseRecorder {
		return r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "alpha", "c-43", "pw-2"), cookie: c, hdr: sameOrigin})
	}
	r.cl.err = tenants.ErrBadCredentials
	if w := post(); w.Code != http.StatusForbidden || len(r.dir.retried()) != 0 {
		t.Errorf("refused claim: %d, retries asked %+v", w.Code, r.dir.retried())
	}
	r.cl.err = nil
	if w := post(); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/done" {
		t.Fatalf("the same claim again: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := r.dir.retried(); len(got) != 1 || got[0] != failed {
		t.Fatalf("retries asked %+v, want one for %+v", got, failed)
	}
	// The Directory's view: the retry due in 30 s, its outcome unknown.
	asked := failed
	asked.HandoverFailed, asked.Retry = "", time.Now().Add(30*time.Second)
	r.dir.set(asked)
	for _, target := range []string{"/done", "/"} {
		b := r.do(req{target: target, from: addrA, cookie: c}).Body.String()
		if !strings.Contains(b, "This device asks Alpha Net again for service within about 70 seconds. If Alpha Net has set up service for it, it switches to Alpha Net then.") ||
			strings.Contains(b, "will switch") || strings.Contains(b, "has not connected") {
			t.Errorf("%s after the same claim again: %s", target, b)
		}
	}
	// Due now: T1 and a DORA.
	asked.Retry = time.Now().Add(-time.Second)
	r.dir.set(asked)
	if b := r.do(req{target: "/done", from: addrA, cookie: c}).Body.String(); !strings.Contains(b, "asks Alpha Net again for service within about 40 seconds") {
		t.Errorf("/done with the retry due: %s", b)
	}
	// The retry failed again: the failure page again.
	r.dir.set(failed)
	if b := r.do(req{target: "/done", from: addrA, cookie: c}).Body.String(); !strings.Contains(b, "Alpha Net has not connected this device yet") {
		t.Errorf("/done after the retry failed: %s", b)
	}
	// Switching, not back in the garden: a claim asks for no retry.
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", ClaimedCustomerID: "c-43"})
	if w := post(); w.Code != http.StatusSeeOther || len(r.dir.retried()) != 1 {
		t.Errorf("claim while switching: %d, retries asked %+v", w.Code, r.dir.retried())
	}
}

// A failure whose reason was lost (the DHCP proxy restarted since) is
// worded as either: the ISP has not taken the device.
func TestHandoverNotTakenPage(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Access: "port1", Addr: addrA, Claimed: "alpha", HandoverFailed: HandoverNotTaken, Retry: time.Now().Add(10 * time.Second)})
	b := r.do(req{target: "/", from: addrA}).Body.String()
	if !strings.Contains(b, "Alpha Net has not connected this device yet") || !strings.Contains(b, "Alpha Net has not taken it: it refused this device or did not answer.") {
		t.Errorf("failure page:\n%s", b)
	}
}
