package portal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// serve runs r.srv on two loopback listeners; the returned stop cancels
// and waits for Serve's result.
func (r *rig) serve() (httpAddr, httpsAddr string, stop func() (time.Duration, error)) {
	r.t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ctx, hl, sl) }()
	var once sync.Once
	var res error
	var took time.Duration
	stop = func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				res = errors.New("Serve did not return")
			}
			took = time.Since(start)
		})
		return took, res
	}
	r.t.Cleanup(func() { stop() })
	return hl.Addr().String(), sl.Addr().String(), stop
}

// serial is the serial number of the certificate served at addr.
func serial(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", st.Version)
	}
	return st.PeerCertificates[0].SerialNumber
}

func TestReload(t *testing.T) {
	r := newRig(t, nil)
	_, httpsAddr, _ := r.serve()
	first := serial(t, httpsAddr)
	next := writeCert(t, r.cert, r.key, "two")
	if first.Cmp(next) == 0 {
		t.Fatal("same serial twice")
	}
	if got := serial(t, httpsAddr); got.Cmp(first) != 0 {
		t.Errorf("changed before Reload: %v", got)
	}
	if err := r.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(t, httpsAddr); got.Cmp(next) != 0 {
		t.Errorf("after Reload: %v, want %v", got, next)
	}
	// A broken pair: an error, and the pair in use stays.
	if err := os.WriteFile(r.key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Reload(); err == nil {
		t.Error("broken key reloaded")
	}
	if got := serial(t, httpsAddr); got.Cmp(next) != 0 {
		t.Errorf("after a failed Reload: %v", got)
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 accepted")
	}
}

func TestServe(t *testing.T) {
	r := newRig(t, nil)
	r.dir.set(Subscriber{MAC: macA, Addr: netip.MustParseAddr("127.0.0.1"), Expires: time.Now().Add(time.Minute)})
	httpAddr, httpsAddr, stop := r.serve()
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	plain := &http.Client{CheckRedirect: noFollow, Timeout: 5 * time.Second}
	resp, err := plain.Get("http://" + httpAddr + "/generate_204")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://"+host+"/" {
		t.Errorf("http: %d %v", resp.StatusCode, resp.Header)
	}
	// HTTPS, with the portal's host name dialled to the listener; the
	// connection stays open (keep-alive) across the shutdown.
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, httpsAddr)
		},
	}
	defer tr.CloseIdleConnections()
	secure := &http.Client{Transport: tr, CheckRedirect: noFollow, Timeout: 5 * time.Second}
	resp, err = secure.Get("https://" + host + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "Choose your Internet provider") {
		t.Errorf("https: %d %s", resp.StatusCode, b)
	}
	took, err := stop()
	if err != nil || took > 2*time.Second {
		t.Errorf("Serve after cancel: %v in %v", err, took)
	}
	if _, err := plain.Get("http://" + httpAddr + "/"); err == nil {
		t.Error("HTTP listener still open")
	}
	// Once only.
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := r.srv.Serve(context.Background(), nil, l1); err == nil {
		t.Error("second Serve accepted")
	}
}

func TestServeListenerError(t *testing.T) {
	r := newRig(t, nil)
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	sl, _ := net.Listen("tcp", "127.0.0.1:0")
	sl.Close() // Accept fails at once
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(context.Background(), hl, sl) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "portal https") {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return on a listener error")
	}
}

// Real tenants: the claim path's limits and checks behind the portal.

type nopProxy struct{}

func (nopProxy) RevalidateMACs(macs []uint64) int          { return len(macs) }
func (nopProxy) RevalidateMACsImmediate(macs []uint64) int { return len(macs) }

type nopAdm struct{}

func (nopAdm) SetAdmitted([]uint64) error { return nil }
func (nopAdm) Admit(uint64) error         { return nil }
func (nopAdm) Unadmit(uint64)             {}

func newTenants(t *testing.T, lim tenants.ClaimLimits) *tenants.Tenants {
	t.Helper()
	return newTenantsMax(t, lim, 100)
}

// newTenantsMax is newTenants with a box of maxDevices device places.
func newTenantsMax(t *testing.T, lim tenants.ClaimLimits, maxDevices int) *tenants.Tenants {
	t.Helper()
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The box's access entries: the ones the rig's directory names (a
	// claim pins the device to its access, which must be one of them).
	ten := tenants.New(tenants.Config{ISPs: []string{"alpha", "beta"}, MaxDevices: maxDevices, Claim: lim,
		Circuits: []tenants.Circuit{{Access: "port1"}, {Access: "port2"}}}, st, registry.New(), nopProxy{}, nopAdm{}, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	op := tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}
	for _, c := range []struct{ isp, id string }{{"beta", "c-1"}, {"beta", "c-2"}} {
		if _, err := ten.CreateCustomer(context.Background(), op, c.isp, tenants.CustomerInput{ID: c.id, Password: "right-pass-" + c.id}); err != nil {
			t.Fatal(err)
		}
	}
	return ten
}

func TestRealTenants(t *testing.T) {
	ten := newTenants(t, tenants.DefaultClaimLimits)
	r := newRig(t, ten)
	ctx := context.Background()
	c, tok := r.open(addrA)
	post := func(from netip.Addr, c *http.Cookie, tok, id, pw string) (int, string, string) {
		w := r.do(req{method: http.MethodPost, target: "/claim", from: from, form: claimForm(tok, "beta", id, pw), cookie: c, hdr: sameOrigin})
		return w.Code, w.Body.String(), w.Header().Get("Retry-After")
	}
	// A wrong password: 403 (a form: no HTTP authentication, never 401) and nothing attached.
	if code, b, _ := post(addrA, c, tok, "c-1", "wrong"); code != http.StatusForbidden || !strings.Contains(b, "The customer ID or password is not right.") {
		t.Fatalf("wrong password: %d %s", code, b)
	}
	if _, err := ten.Device(ctx, "beta", "02:00:00:00:00:0a"); !errors.Is(err, tenants.ErrNotFound) {
		t.Fatalf("device after a wrong password: %v", err)
	}
	// 1000 more in a row: each answered 403 or 429 (with Retry-After),
	// quickly, and nothing attached.
	goroutines := runtime.NumGoroutine()
	start := time.Now()
	counts := map[int]int{}
	for i := range 1000 {
		code, b, ra := post(addrA, c, tok, "c-1", "wrong-"+string(rune('a'+i%26)))
		counts[code]++
		switch code {
		case http.StatusForbidden:
		case http.StatusTooManyRequests:
			if ra == "" || !strings.Contains(b, "Too many attempts. Wait ") {
				t.Fatalf("429 without Retry-After or sentence: %q %s", ra, b)
			}
		default:
			t.Fatalf("attempt %d: %d %s", i, code, b)
		}
	}
	if counts[http.StatusTooManyRequests] < 900 {
		t.Errorf("answers %v: the claim limits did not apply", counts)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("1000 attempts took %v", d)
	}
	if _, err := ten.Device(ctx, "beta", "02:00:00:00:00:0a"); !errors.Is(err, tenants.ErrNotFound) {
		t.Fatalf("device after 1000 wrong passwords: %v", err)
	}
	if n := runtime.NumGoroutine(); n > goroutines+5 {
		t.Errorf("goroutines %d → %d", goroutines, n)
	}
	st := r.srv.Stats()
	if st.ClaimsRefused+st.ClaimsRateLimited != 1001 || st.ClaimsRefused != uint64(counts[http.StatusForbidden])+1 {
		t.Errorf("stats %+v, answers %v", st, counts)
	}
	// Meanwhile another customer claims from another device.
	cB, tokB := r.open(addrB)
	if code, b, _ := post(addrB, cB, tokB, "c-2", "right-pass-c-2"); code != http.StatusSeeOther {
		t.Fatalf("right password: %d %s", code, b)
	}
	d, err := ten.Device(ctx, "beta", "02:00:00:00:00:0b")
	if err != nil || d.CustomerID != "c-2" || d.Source != tenants.SourceClaim || d.Access != "port2" {
		t.Errorf("claimed device %+v %v", d, err)
	}
}

// A claim of a device new to the box, refused for want of a place (here
// beta's share of a box of 4, which the operator's attaches filled): the
// subscriber is told the network has no room. The generic conflict page it
// got said the device "cannot be moved here", though nothing was moving.
func TestRealTenantsNoRoom(t *testing.T) {
	ten := newTenantsMax(t, tenants.DefaultClaimLimits, 4)
	op := tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}
	if _, err := ten.CreateCustomer(context.Background(), op, "beta", tenants.CustomerInput{ID: "c-9", DeviceLimit: 8}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := ten.AttachDevice(context.Background(), op, "beta", tenants.DeviceInput{MAC: fmt.Sprintf("02:00:00:00:0b:%02x", i), CustomerID: "c-9"}); err != nil {
			t.Fatal(err)
		}
	}
	r := newRig(t, ten)
	c, tok := r.open(addrA)
	w := r.do(req{method: http.MethodPost, target: "/claim", from: addrA, form: claimForm(tok, "beta", "c-1", "right-pass-c-1"), cookie: c, hdr: sameOrigin})
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "This network has no room for another device just now") ||
		strings.Contains(w.Body.String(), "moved") {
		t.Errorf("claim past beta's share: %d %s", w.Code, w.Body)
	}
	if _, err := ten.Device(context.Background(), "beta", "02:00:00:00:00:0a"); !errors.Is(err, tenants.ErrNotFound) {
		t.Errorf("device after the refused claim: %v", err)
	}
}

func TestRealTenantsDeviceLimit(t *testing.T) {
	ten := newTenants(t, tenants.ClaimLimits{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})
	r := newRig(t, ten)
	for _, a := range []netip.Addr{addrA, addrB} {
		c, tok := r.open(a)
		w := r.do(req{method: http.MethodPost, target: "/claim", from: a, form: claimForm(tok, "beta", "c-1", "right-pass-c-1"), cookie: c, hdr: sameOrigin})
		want := http.StatusSeeOther
		if a == addrB {
			want = http.StatusConflict
		}
		if w.Code != want {
			t.Fatalf("%v: %d %s", a, w.Code, w.Body)
		}
		if a == addrB && (!strings.Contains(w.Body.String(), "This customer already has 1 device connected, the most it may.") ||
			!strings.Contains(w.Body.String(), `name="replace" value="02:00:00:00:00:0a"`)) {
			t.Errorf("device limit: %s", w.Body)
		}
	}
}

// TestInflightPerSource: the in-flight cap is per address and local port:
// a subscriber of another ISP with the same address (another VRF's port)
// is not held back by the first one's requests.
func TestInflightPerSource(t *testing.T) {
	l := inflight{n: map[source]int{}}
	a := netip.MustParseAddr("100.64.0.100")
	alpha, beta := source{a, 31001}, source{a, 31002}
	for range maxInFlight {
		if !l.acquire(alpha) {
			t.Fatal("refused under the cap")
		}
	}
	if l.acquire(alpha) {
		t.Error("alpha's subscriber above the cap")
	}
	if !l.acquire(beta) {
		t.Error("beta's subscriber with the same address refused")
	}
	l.release(alpha)
	if !l.acquire(alpha) {
		t.Error("refused after a release")
	}
}
