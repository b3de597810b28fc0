package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apiclient "github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// The onboarding rows of the failpoint matrix: on a circuit with an
// onboarding pool ispmux is the DHCP server of the MACs without a device
// record (lease committed → bound in the walled garden → ACK; ended by
// RELEASE, DECLINE, expiry, handover). Crashed at each onboard/ point, then
// restarted: a lease the client was ACKed is still ispmux's, with the same
// address, and the garden forwards it (lost = 0); a lease that ended does
// not come back (phantom = 0: not in status, not forwarded); after a restart
// no other MAC is given the address of a stored lease for one lease time
// (the restart quarantine). The views are subView's walled-garden ones.

// onboardLease is the onboarding lease of the matrix's portal lab
// (ispmux's default): T1 10 s, so a lease ispmux forgot is still held by
// its client when the views are read after the restart.
const onboardLease = 20 * time.Second

// theOnboardingExchanges are the matrix's onboarding rows. s1..s3 have no
// device record (none is in ispmux's configuration); their ISPs' Kea know
// their customer IDs, so one can be attached for the handover. s3 is the
// other MAC of the quarantine checks.
func theOnboardingExchanges() []exchange {
	grant := []string{failpoint.OnboardAfterCommit, failpoint.OnboardAfterAck}
	end := []string{failpoint.OnboardEndAfterCommit}
	return []exchange{
		{
			name: "onboarding DORA", sub: "s1", client: "dhclient", points: grant, onboarding: true,
			act: func(c *caseRun) {
				c.cl = c.m.r.startDhclient(c.sub, c.m.conf)
				c.m.clients = append(c.m.clients, c.cl)
			},
			settle: func(c *caseRun) {
				c.quarantineCheck()
				// ACKed before the crash: the same address, without a NAK
				// (a NAK and a new DORA would hide a lease ispmux forgot).
				// Else the retried REQUEST (or a new DORA) gets one ispmux
				// knows: the restored lease's address, or another.
				a, ok := c.m.waitOnboarded(c.sub, 20*time.Second)
				switch {
				case !ok:
					c.t.Errorf("dhclient holds no onboarding lease of ispmux's after the restart; client:\n%s", lastLines(c.cl.out.String(), 10))
				case c.atCrash.IsValid() && a != c.atCrash:
					c.t.Errorf("ACKed %v before the crash, holds %v after the restart", c.atCrash, a)
				}
				if n := c.m.counter("onboarding_nak"); c.atCrash.IsValid() && n > 0 {
					c.t.Errorf("%d NAKs after the restart to a client ACKed before the crash", n)
				}
			},
		},
		{
			// The client certainly holds its lease at the crash (ACKed in
			// the setup, renewing): the lost check cannot be dodged by an
			// ACK that never left.
			name: "onboarding renew", sub: "s2", client: "udhcpc (SIGUSR1: unicast REQUEST)", points: grant, onboarding: true,
			setup: func(c *caseRun) { c.onboardWith("udhcpc") },
			act:   func(c *caseRun) { c.cl.signal(syscall.SIGUSR1) },
			settle: func(c *caseRun) {
				c.quarantineCheck()
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					if o, ok := c.m.onboardingOf(c.sub.MAC); ok && o.IP == c.addr.String() {
						if exp, _ := time.Parse(time.RFC3339, o.Expires); exp.After(c.exp) {
							if n := c.m.counter("onboarding_nak"); n > 0 {
								c.t.Errorf("%d NAKs after the restart", n)
							}
							return
						}
					}
					c.cl.signal(syscall.SIGUSR1)
					time.Sleep(1500 * time.Millisecond)
				}
				c.t.Errorf("onboarding lease of %v not renewed after the restart; client:\n%s", c.addr, lastLines(c.cl.out.String(), 10))
			},
		},
		{
			name: "onboarding release", sub: "s1", client: "dhclient -r", points: end, onboarding: true,
			setup: func(c *caseRun) { c.onboardWith("dhclient") },
			act: func(c *caseRun) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.m.r.topo.DhclientRelease(ctx, c.sub); err != nil {
					c.t.Errorf("dhclient -r: %v", err)
				}
			},
			// Its end was durable with its event. (Not in status, not
			// forwarded: the views, which probe the garden from the
			// released address.)
			settle: func(c *caseRun) { c.endEvent(subscribers.OnboardingEndReleased) },
		},
		{
			// The device is attached to its ISP's customer (over the
			// control socket's API) with the armed ispmux; its dhclient,
			// restarted, asks for its onboarding address again (INIT-REBOOT):
			// ispmux ends the onboarding lease (the crash) and NAKs; the
			// client then gets its ISP's lease.
			name: "onboarding handover", sub: "s2", client: "dhclient INIT-REBOOT, attached to its ISP's customer over the API",
			points: end, onboarding: true, endedByIspmux: true,
			setup: func(c *caseRun) {
				c.onboardWith("dhclient")
				c.waitLeaseFile()
				c.cl.kill() // its lease file stays: it restarts in INIT-REBOOT
			},
			act: func(c *caseRun) {
				c.attach()
				c.cl = c.m.r.startDhclient(c.sub, c.m.conf)
				c.m.clients = append(c.m.clients, c.cl)
			},
			settle: func(c *caseRun) {
				// The end was durable (the NAK rule is stateless: a lease
				// restored by mistake would be ended again by the NAK,
				// unseen but for its event).
				c.endEvent(subscribers.OnboardingEndHandover)
				deadline := time.Now().Add(25 * time.Second)
				for time.Now().Before(deadline) {
					if c.m.r.handoverDoneQuiet(c.sub, c.sub.ISP) {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				c.t.Errorf("not bound at %s after the restart; client:\n%s", c.sub.ISP, lastLines(c.cl.out.String(), 12))
			},
		},
		{
			// The lease runs out while ispmux is down (its client gone):
			// the start ends it, and keeps its address from the other
			// MACs for one lease time; its own MAC gets it back.
			name: "onboarding lease run out while down (restart quarantine)", sub: "s1",
			client: "dhclient, killed at the crash; hand-built DORA after the restart", points: []string{failpoint.OnboardAfterAck},
			onboarding: true,
			act: func(c *caseRun) {
				c.cl = c.m.r.startDhclient(c.sub, c.m.conf)
				c.m.clients = append(c.m.clients, c.cl)
			},
			afterCrash: func(c *caseRun) {
				c.addr = c.requested()
				c.cl.kill()
				_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
				c.atCrash = netip.Addr{}
				// The lease was committed just before the crash.
				time.Sleep(time.Until(c.m.cur.exitedAt().Add(onboardLease + 500*time.Millisecond)))
			},
			settle: func(c *caseRun) {
				if !c.addr.IsValid() {
					c.t.Fatalf("no DHCPREQUEST in dhclient's output:\n%s", c.cl.out.String())
				}
				c.quarantineCheck()
				a, ok := c.rawDORA(5 * time.Second)
				if !ok || a != c.addr {
					c.t.Errorf("%s's own DORA after the restart: %v %v, want its quarantined %v back", c.sub.Name, a, ok, c.addr)
				}
			},
		},
	}
}

// newOnboardingMatrix brings up the portal lab of the onboarding rows.
func newOnboardingMatrix(t *testing.T, fp string) *matrix {
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: matrixLease, Portal: true,
		OnboardingLease: onboardLease, Unconfigured: []string{"s1", "s2", "s3"}})
	m := &matrix{r: r, fp: fp}
	var err error
	if m.base, err = os.ReadFile(r.cfg); err != nil {
		t.Fatal(err)
	}
	m.conf = r.writeClientConf("")
	m.subs = r.topo.Subscribers
	t.Cleanup(func() {
		for _, c := range m.clients {
			c.kill()
		}
		m.cur.kill9()
	})
	return m
}

// onboardingOf returns mac's onboarding lease in ispmux's status.
func (m *matrix) onboardingOf(mac string) (o struct{ IP, Expires string }, ok bool) {
	st, err := m.r.status()
	if err != nil {
		return o, false
	}
	for _, l := range st.Onboarding {
		if strings.EqualFold(l.MAC, mac) {
			o.IP, o.Expires = l.IP, l.Expires
			return o, true
		}
	}
	return o, false
}

// counter is one of ispmux's DHCP counters (0 if ispmux is down).
func (m *matrix) counter(name string) uint64 {
	st, err := m.r.status()
	if err != nil {
		return 0
	}
	return st.DHCP[name]
}

// waitOnboarded waits until sub's client holds an onboarding address that
// ispmux holds for its MAC; it returns it.
func (m *matrix) waitOnboarded(sub lab.Sub, within time.Duration) (netip.Addr, bool) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		p, ok := m.r.topo.SubAddr(context.Background(), sub)
		if !ok || !onboardingAddr(p.Addr()) {
			continue
		}
		if o, ok := m.onboardingOf(sub.MAC); ok && o.IP == p.Addr().String() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// onboardWith starts a client of kind for c.sub with the clean ispmux and
// waits until it holds an onboarding lease (setup).
func (c *caseRun) onboardWith(kind string) {
	c.t.Helper()
	m := c.m
	switch kind {
	case "dhclient":
		c.cl = m.r.startDhclient(c.sub, m.conf)
	case "udhcpc":
		c.cl = m.r.startUdhcpc(c.sub)
	}
	m.clients = append(m.clients, c.cl)
	a, ok := m.waitOnboarded(c.sub, 15*time.Second)
	if !ok {
		c.fatalf("setup: %s (%s) holds no onboarding lease; client:\n%s\nispmux:\n%s", c.sub.Name, kind, c.cl.out.String(), lastLines(m.r.log.String(), 20))
	}
	c.addr = a
	o, _ := m.onboardingOf(c.sub.MAC)
	c.exp, _ = time.Parse(time.RFC3339, o.Expires)
}

// waitLeaseFile waits until dhclient has written c.addr's lease to its
// file (after its script set the address: killed before, it restarts with
// a DISCOVER, not an INIT-REBOOT).
func (c *caseRun) waitLeaseFile() {
	lf, _ := c.m.r.topo.DhclientFiles(c.sub)
	want := "fixed-address " + c.addr.String() + ";"
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(lf); err == nil && strings.Contains(string(b), want) {
			return
		}
	}
	c.fatalf("setup: dhclient wrote no lease of %v", c.addr)
}

// attach makes c.sub a device of its ISP's customer (created first) over
// the control socket's API, as the operator.
func (c *caseRun) attach() {
	c.t.Helper()
	api, err := apiclient.NewSocket(c.m.r.sock(), apiclient.Options{})
	if err != nil {
		c.fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := api.CreateCustomer(ctx, c.sub.ISP, tenants.CustomerInput{ID: c.sub.CustomerID, Password: "pw-" + c.sub.CustomerID}); err != nil {
		c.fatalf("create customer %s at %s: %v", c.sub.CustomerID, c.sub.ISP, err)
	}
	if _, err := api.AttachDevice(ctx, c.sub.ISP, tenants.DeviceInput{MAC: c.sub.MAC, CustomerID: c.sub.CustomerID}); err != nil {
		c.fatalf("attach %s: %v", c.sub.MAC, err)
	}
}

var dhcpRequestRE = regexp.MustCompile(`DHCPREQUEST for ([0-9.]+)`)

// requested is the address of dhclient's last DHCPREQUEST (the lease
// committed at a crash after the commit, whether or not its ACK left).
func (c *caseRun) requested() netip.Addr {
	ms := dhcpRequestRE.FindAllStringSubmatch(c.cl.out.String(), -1)
	if len(ms) == 0 {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(ms[len(ms)-1][1])
	return a
}

// endEvent checks that the store holds one onboarding-ended event of
// c.sub's lease of c.addr, for reason, right after the restart: the end
// and its event were one transaction before the crash.
func (c *caseRun) endEvent(reason string) {
	c.t.Helper()
	var got []string
	for _, e := range c.m.r.events() {
		if e.Kind == string(subscribers.EventOnboardingEnded) && strings.EqualFold(e.MAC, c.sub.MAC) {
			got = append(got, e.IP+" "+e.Reason)
		}
	}
	if want := c.addr.String() + " " + reason; len(got) != 1 || got[0] != want {
		c.t.Errorf("onboarding-ended events of %s after the restart: %q, want [%q]", c.sub.Name, got, want)
	}
}

// quarantineCheck: right after the restart another MAC without a device
// record (s3, hand-built DORA) must not be given any address c.sub's
// lease had before the crash (committed, ACKed, or restored), for one
// lease time: its client may still use it.
func (c *caseRun) quarantineCheck() {
	c.t.Helper()
	other := &caseRun{t: c.t, m: c.m, sub: c.m.r.sub("s3")}
	var taken []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !slices.Contains(taken, a) {
			taken = append(taken, a)
		}
	}
	add(c.addr)
	add(c.atCrash)
	if c.cl != nil && c.cl.kind == "dhclient" {
		add(c.requested())
	}
	if o, ok := c.m.onboardingOf(c.sub.MAC); ok {
		a, _ := netip.ParseAddr(o.IP)
		add(a)
	}
	a, ok := other.rawDORA(5 * time.Second)
	switch {
	case !ok:
		c.t.Errorf("%s got no onboarding lease right after the restart", other.sub.Name)
	case slices.Contains(taken, a):
		c.t.Errorf("%s was given %v right after the restart: %s's lease's address (%v)", other.sub.Name, a, c.sub.Name, taken)
	default:
		c.t.Logf("%s got %v right after the restart (%s's: %v)", other.sub.Name, a, c.sub.Name, taken)
	}
}

// TestClassifyOnboarding: the walled garden's verdicts, on made-up views
// (the matrix cannot make a garden forward a lease ispmux does not hold).
func TestClassifyOnboarding(t *testing.T) {
	now := time.Now()
	x, y := netip.MustParseAddr("100.72.0.2"), netip.MustParseAddr("100.72.0.3")
	isp := netip.MustParseAddr("100.64.0.100")
	exp := now.Add(15 * time.Second)
	for _, tc := range []struct {
		name string
		v    subView
		want string
	}{
		{"held", subView{Client: x, Onboarding: x, OnboardingExpires: exp, Garden: x}, "consistent"},
		{"nothing", subView{}, "consistent"},
		{"store forgot it", subView{Client: x}, "LOST"},
		{"held, not forwarded", subView{Client: x, Onboarding: x, OnboardingExpires: exp}, "LOST"},
		{"released, restored", subView{Onboarding: x, OnboardingExpires: exp, Garden: x}, "PHANTOM"},
		{"released, still forwarded", subView{Garden: x}, "PHANTOM"},
		{"another address", subView{Client: x, Onboarding: y, OnboardingExpires: exp, Garden: y}, "LOST+PHANTOM"},
		{"ending", subView{Onboarding: x, OnboardingExpires: now.Add(time.Second)}, "consistent"},
		{"handed over", subView{ISP: "beta", Client: isp, Ispmux: isp, IspmuxISP: "beta", Kea: isp, KeaExpires: exp, IspmuxExpires: exp}, "consistent"},
		{"handed over, onboarding kept", subView{ISP: "beta", Client: isp, Ispmux: isp, IspmuxISP: "beta", Kea: isp, KeaExpires: exp, IspmuxExpires: exp,
			Onboarding: x, OnboardingExpires: exp}, "PHANTOM"},
	} {
		if got := classify(tc.v, now).String(); got != tc.want {
			t.Errorf("%s: %s, want %s (%s)", tc.name, got, tc.want, fmt.Sprint(tc.v))
		}
	}
}
