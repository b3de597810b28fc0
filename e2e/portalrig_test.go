package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
)

// portalClient is an HTTP client for sub, in the walled garden: every
// connection is made inside sub's namespace to the portal's address (a
// name resolves there through the garden's DNS, checked on its own), TLS
// trusts the lab CA only, cookies are kept and redirects are not followed.
func (r *rig) portalClient(sub lab.Sub) *http.Client {
	r.t.Helper()
	pem, err := os.ReadFile(r.topo.Portal.CAFile)
	if err != nil {
		r.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return dialInNS(ctx, sub.NS, "tcp4", net.JoinHostPort(lab.PortalAddr, port))
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConns: 2},
		Jar:       jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// gardenLookup resolves name (A records) from sub, asking server:53.
func gardenLookup(ns, server, name string) ([]netip.Addr, error) {
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialInNS(ctx, ns, "udp4", net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return res.LookupNetIP(ctx, "ip4", name)
}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

// portalPage GETs the portal's page and returns its body and form token.
func portalPage(c *http.Client) (body, token string, err error) {
	// A client's script sets its new address, then its default route:
	// asked in between (as soon as the address shows), the page's
	// connection finds no route (two CI runs). It is asked again, for a
	// moment, on that error alone.
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err = c.Get("https://" + lab.PortalHostname + "/")
		if !errors.Is(err, syscall.ENETUNREACH) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), "", fmt.Errorf("GET /: %s", resp.Status)
	}
	m := tokenRE.FindSubmatch(b)
	if m == nil {
		return string(b), "", fmt.Errorf("no form token on the page")
	}
	return string(b), string(m[1]), nil
}

// portalClaim posts the claim form as the portal's own page would (same
// origin), with extra fields added, and returns the response.
func portalClaim(c *http.Client, token, isp, customer, password string, extra url.Values) (*http.Response, string, error) {
	f := url.Values{"token": {token}, "isp": {isp}, "customer_id": {customer}, "password": {password}}
	for k, v := range extra {
		f[k] = v
	}
	return portalPost(c, "/claim", f)
}

// portalPost posts the form f to the portal's path as its own pages do
// (same origin) and returns the response and its body.
func portalPost(c *http.Client, path string, f url.Values) (*http.Response, string, error) {
	req, _ := http.NewRequest(http.MethodPost, "https://"+lab.PortalHostname+path, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+lab.PortalHostname)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// waitDonePage fetches the portal's /done page with c until it answers
// 200 with want in it, within; it returns the last page fetched and
// whether it did.
func waitDonePage(c *http.Client, within time.Duration, want string) (string, bool) {
	page := ""
	ok := eventually(within, func() bool {
		resp, err := c.Get("https://" + lab.PortalHostname + "/done")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(page, want)
	})
	return page, ok
}

// backInGarden reports whether sub is back in the walled garden after
// its handover to chosen ("": any ISP) went unanswered: ispmux's status
// gives it an onboarding lease with that failure, and sub holds that
// lease's address.
func (r *rig) backInGarden(sub lab.Sub, chosen string) bool {
	o, ok := r.onboarding(sub.MAC)
	a, has := r.topo.SubAddr(context.Background(), sub)
	return ok && o.HandoverFailed == "unanswered" && (chosen == "" || o.Chosen == chosen) && has &&
		netip.MustParsePrefix(lab.OnboardingPool).Contains(a.Addr()) && o.IP == a.Addr().String()
}

// onboarding returns sub's onboarding lease in ispmux's status.
func (r *rig) onboarding(mac string) (ctlsock.OnboardingStatus, bool) {
	for _, o := range r.mustStatus().Onboarding {
		if o.MAC == mac {
			return o, true
		}
	}
	return ctlsock.OnboardingStatus{}, false
}

// artifacts is where browser screenshots go: $ISPMUX_ARTIFACTS (CI sets
// it) or a directory under the system's temporary one, kept after the test.
func (r *rig) artifacts() string {
	dir := os.Getenv("ISPMUX_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ispmux-artifacts")
	}
	dir = filepath.Join(dir, strings.ReplaceAll(r.t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	return dir
}

// handoverDone reports whether sub holds isp's lease: Kea's active lease
// for its MAC is the address on its interface, and ispmux has it bound
// there.
func (r *rig) handoverDone(sub lab.Sub, isp string) bool {
	l, ok := r.keaActive(isp, sub.MAC)
	if !ok {
		return false
	}
	a, ok := r.topo.SubAddr(context.Background(), sub)
	if !ok || a.Addr() != l.Address {
		return false
	}
	b, ok := r.bound(sub.MAC)
	return ok && b.ISP == isp
}

// gardenPortal starts sub's dhclient, waits for its onboarding lease (an
// address of the walled garden's pool) and opens the portal from it: the
// client's process, sub's portal client and the form's token.
func (r *rig) gardenPortal(ctx context.Context, sub lab.Sub) (*exec.Cmd, *http.Client, string) {
	r.t.Helper()
	pool := netip.MustParsePrefix(lab.OnboardingPool)
	cl := startClient(r.t, r.topo.Dhclient(ctx, sub))
	if a, ok := r.waitAddr(sub, 30*time.Second); !ok || !pool.Contains(a.Addr()) {
		r.t.Fatalf("%s's address %v %v, want one from %s; ispmux log:\n%s", sub.Name, a, ok, pool, r.log.String())
	}
	c := r.portalClient(sub)
	_, tok, err := portalPage(c)
	if err != nil {
		r.t.Fatal(err)
	}
	return cl, c, tok
}
