package demo

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	apiclient "github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/netnsrun"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// The onboarding step: s6 is in no one's registrations (lab
// Options.Unconfigured); beta registers customer newCustomer through the
// API (here the control socket, as the operator would for it) and beta's
// Kea knows that customer ID (Options.KeaKnown). s6's DHCP client gets an
// onboarding lease, the portal is driven from inside s6's namespace, and
// s6 ends up on beta.
const (
	newSub      = "s6"
	newISP      = "beta"
	newCustomer = "c-new"
	newPassword = "demo-password" // the lab's throwaway credentials
	anyResolver = "8.8.8.8"       // a DNS server the device might have been set up with
	handoverMax = 45 * time.Second
)

// registerCustomer creates newCustomer at newISP through the control socket
// (what `ispmux ctl customer-add` does).
func registerCustomer(ctx context.Context, sock string) error {
	c, err := apiclient.NewSocket(sock, apiclient.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	_, err = c.CreateCustomer(ctx, newISP, tenants.CustomerInput{ID: newCustomer, Password: newPassword})
	return err
}

// onboarding runs the step for sub, which holds an onboarding lease, and
// returns when sub is on newISP (its Kea lease on sub's interface and
// ispmux's binding at newISP).
func onboarding(ctx context.Context, w io.Writer, topo *lab.Topology, sock string, sub lab.Sub) error {
	say := func(format string, a ...any) { fmt.Fprintf(w, "  "+format+"\n", a...) }
	fmt.Fprintf(w, "\nonboarding: %s (%s) is registered nowhere; %s has customer %s, who owns it\n", sub.Name, sub.MAC, newISP, newCustomer)

	// 1. The lease, as the device's DHCP client stored it.
	lf, _ := topo.DhclientFiles(sub)
	var l dhclientLease
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(lf)
		if err == nil {
			l = parseDhclientLease(string(b))
		}
		if l.Options["captive-portal"] != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if l.Address == "" {
		return fmt.Errorf("demo: no lease in %s", lf)
	}
	say("lease (dhclient's lease file): address %s, router %s, DNS %s (the portal), lease %s s",
		l.Address, l.Options["routers"], l.Options["domain-name-servers"], l.Options["dhcp-lease-time"])
	say("  option 114 (captive-portal): %s", orNone(l.Options["captive-portal"]))

	// 2. The walled garden.
	for _, q := range []struct{ server, name string }{{lab.PortalAddr, "example.com"}, {anyResolver, "www.beta.example"}} {
		addrs, err := lookupInNS(ctx, sub.NS, q.server, q.name)
		say("garden DNS: %s asked of %s → %s", q.name, q.server, answer(addrs, err))
	}
	before := gardenDrops(ctx, sock)
	pingOK := ping(ctx, sub.NS, lab.HostAddr)
	say("garden: ping %s (the ISP host) → %s (walled_garden drops on acc0 +%d)", lab.HostAddr, yesNo(pingOK, "answered (unexpected)", "no answer"), gardenDrops(ctx, sock)-before)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := dialInNS(cctx, sub.NS, "tcp4", net.JoinHostPort(lab.HostAddr, "443"))
	cancel()
	switch {
	case err == nil:
		c.Close()
		say("garden: https://%s → connected (unexpected)", lab.HostAddr)
	case errors.Is(err, syscall.ECONNREFUSED):
		say("garden: https://%s → connection reset by ispmux (only the portal is reachable)", lab.HostAddr)
	default:
		say("garden: https://%s → %v", lab.HostAddr, err)
	}

	// 3. The portal, from inside the device's namespace.
	hc, err := portalClient(topo, sub)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	var resp *http.Response
	for range 20 { // the address may be on the interface a moment before its route
		if resp, err = do(ctx, hc, "http://example.com/"); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("demo: portal: %w", err)
	}
	resp.Body.Close()
	say("portal: GET http://example.com/ → %s, Location: %s", resp.Status, resp.Header.Get("Location"))
	page, err := get(ctx, hc, "https://"+lab.PortalHostname+"/")
	if err != nil {
		return fmt.Errorf("demo: portal: %w", err)
	}
	say("portal: GET https://%s/ → %q (TLS verified against the lab CA); the ISPs offered:", lab.PortalHostname, heading(page))
	for _, i := range portalISPs(page) {
		say("  %-6s %-16s %s", i.Name, i.Display, i.Description)
	}
	token := formToken(page)
	if token == "" {
		return errors.New("demo: portal: no form token on the page")
	}
	f := url.Values{"token": {token}, "isp": {newISP}, "customer_id": {newCustomer}, "password": {newPassword}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+lab.PortalHostname+"/claim", strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://"+lab.PortalHostname)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	claimed := time.Now()
	resp, err = hc.Do(req)
	if err != nil {
		return fmt.Errorf("demo: portal claim: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("demo: portal claim: %s: %q", resp.Status, alert(string(body)))
	}
	say("portal: POST /claim isp=%s customer_id=%s password=… → %s, Location: %s", newISP, newCustomer, resp.Status, resp.Header.Get("Location"))
	if done, err := get(ctx, hc, resolveRef(resp)); err == nil {
		say("portal: GET %s → %q", resp.Header.Get("Location"), heading(done))
	}

	// 4. The handover: at its renewal (T1 of the onboarding lease) the
	// device is NAKed, starts over and is relayed to its ISP.
	say("handover: waiting for %s's DHCP client to renew (T1 of the onboarding lease)...", sub.Name)
	end := time.Now().Add(handoverMax)
	for {
		if b, ok := boundAt(ctx, topo, sock, sub, newISP); ok {
			say("handover: %s on %s with %s (from %s's Kea, via ispmux) %.1f s after the claim",
				sub.Name, newISP, b.IP, newISP, time.Since(claimed).Seconds())
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("demo: %s not on %s %v after the claim", sub.Name, newISP, handoverMax)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// boundAt returns sub's binding when ispmux has it at isp with the address
// on sub's interface.
func boundAt(ctx context.Context, topo *lab.Topology, sock string, sub lab.Sub, isp string) (ctlsock.BindingStatus, bool) {
	st, err := ctlsock.FetchStatus(ctx, sock)
	if err != nil {
		return ctlsock.BindingStatus{}, false
	}
	a, ok := topo.SubAddr(ctx, sub)
	if !ok {
		return ctlsock.BindingStatus{}, false
	}
	for _, b := range st.Bindings {
		if b.MAC == sub.MAC && b.ISP == isp && b.IP == a.Addr().String() {
			return b, true
		}
	}
	return ctlsock.BindingStatus{}, false
}

func gardenDrops(ctx context.Context, sock string) uint64 {
	st, err := ctlsock.FetchStatus(ctx, sock)
	if err != nil {
		return 0
	}
	for _, p := range st.Ports {
		if p.Name == "acc0" {
			return p.Drops["walled_garden"]
		}
	}
	return 0
}

func ping(ctx context.Context, ns, addr string) bool {
	return exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", addr).Run() == nil
}

// dhclientLease is the last lease of a dhclient lease file.
type dhclientLease struct {
	Address string
	Options map[string]string // "routers" → "100.72.0.1", quotes removed
}

// parseDhclientLease returns the last `lease { ... }` block of a dhclient
// lease file.
func parseDhclientLease(text string) dhclientLease {
	var cur, last dhclientLease
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "lease {"):
			cur, in = dhclientLease{Options: map[string]string{}}, true
		case line == "}":
			if in {
				last, in = cur, false
			}
		case in:
			line = strings.TrimSuffix(line, ";")
			if v, ok := strings.CutPrefix(line, "fixed-address "); ok {
				cur.Address = v
			} else if v, ok := strings.CutPrefix(line, "option "); ok {
				k, v, _ := strings.Cut(v, " ")
				cur.Options[k] = strings.Trim(v, `"`)
			}
		}
	}
	if last.Options == nil {
		last.Options = map[string]string{}
	}
	return last
}

// portalISP is one choice on the portal's page.
type portalISP struct{ Name, Display, Description string }

var (
	ispRE     = regexp.MustCompile(`name="isp" value="([^"]*)"[^>]*>\s*<label[^>]*><span class="isp-name">([^<]*)</span>(?:\s*<span class="isp-desc">([^<]*)</span>)?`)
	tokenRE   = regexp.MustCompile(`name="token" value="([^"]+)"`)
	headingRE = regexp.MustCompile(`<h1>([^<]*)</h1>`)
	alertRE   = regexp.MustCompile(`role="alert"[\s\S]*?<li>(?:<a [^>]*>)?([^<]*)`)
)

// portalISPs returns the ISPs the portal's page offers.
func portalISPs(page string) []portalISP {
	var out []portalISP
	for _, m := range ispRE.FindAllStringSubmatch(page, -1) {
		out = append(out, portalISP{html.UnescapeString(m[1]), html.UnescapeString(m[2]), html.UnescapeString(m[3])})
	}
	return out
}

func formToken(page string) string {
	if m := tokenRE.FindStringSubmatch(page); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// alert is the page's first error message, else its heading.
func alert(page string) string {
	if m := alertRE.FindStringSubmatch(page); m != nil {
		return html.UnescapeString(m[1])
	}
	return heading(page)
}

func heading(page string) string {
	if m := headingRE.FindStringSubmatch(page); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// portalClient is an HTTP client inside sub's namespace: every connection
// goes to the portal's address (the walled garden's DNS would answer any
// name with it anyway), TLS trusts the lab CA only, cookies are kept and
// redirects are not followed (the demo shows each).
func portalClient(topo *lab.Topology, sub lab.Sub) (*http.Client, error) {
	pem, err := os.ReadFile(topo.Portal.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("demo: no certificate in %s", topo.Portal.CAFile)
	}
	jar, _ := cookiejar.New(nil)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return dialInNS(ctx, sub.NS, "tcp4", net.JoinHostPort(lab.PortalAddr, port))
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}},
		Jar:       jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func do(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

func get(ctx context.Context, c *http.Client, u string) (string, error) {
	resp, err := do(ctx, c, u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), err
}

func resolveRef(resp *http.Response) string {
	loc, err := resp.Location()
	if err != nil {
		return resp.Request.URL.String()
	}
	return loc.String()
}

// lookupInNS resolves name (A records) from inside ns, asking server:53.
func lookupInNS(ctx context.Context, ns, server, name string) ([]netip.Addr, error) {
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialInNS(ctx, ns, "udp4", net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return res.LookupNetIP(ctx, "ip4", name)
}

// dialInNS connects to addr from inside the named network namespace ns: the
// socket is made on a thread switched into ns and back (netnsrun), on a
// goroutine of its own, with which a thread that cannot be switched back
// ends.
func dialInNS(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var c net.Conn
		err := netnsrun.InNamed(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil && c != nil { // connected, but the thread is stuck in ns
			c.Close()
			c = nil
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func answer(addrs []netip.Addr, err error) string {
	if err != nil {
		return err.Error()
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	out := strings.Join(s, ", ")
	if len(addrs) == 1 && addrs[0].String() == lab.PortalAddr {
		out += " (the portal)"
	}
	return out
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
