package e2e

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/lab"
)

// The failpoint matrix (issue 6): every DHCP exchange ispmux takes part in,
// crashed (SIGKILL) at every failpoint it passes through, against real Kea
// and real clients; after a restart (and the replay of pending intents) the
// client's, ispmux's and Kea's views of the subscriber's lease must agree:
// nothing lost, nothing phantom, nothing orphaned.

// matrixLease is Kea's lease time in the matrix: long enough that a
// phantom or lost binding outlives the settling after a restart (it would
// otherwise vanish by expiry and pass unseen), short enough for T1 to
// matter nowhere.
const matrixLease = 30 * time.Second

// expiryLease is what the expiry exchange's client asks for (option 51).
const expiryLease = 8

// exchange is one DHCP exchange of the matrix.
type exchange struct {
	name   string
	sub    string   // lab subscriber
	client string   // how the subscriber takes part (for the report)
	points []string // the failpoints the exchange passes through
	// setup, with a clean ispmux running, brings the subscriber to the
	// exchange's starting state (nil: nothing to do, and the armed
	// ispmux is the first one).
	setup func(c *caseRun)
	// whileDown runs after setup, while ispmux is stopped, before the
	// armed one starts (a change the start itself acts on).
	whileDown func(c *caseRun)
	// act starts the exchange, with the armed ispmux running (nil: the
	// start is the exchange).
	act func(c *caseRun)
	// settle, after the clean restart, gives the client its retries and
	// ispmux its replay, and checks the exchange's own outcome.
	settle func(c *caseRun)
	// afterCrash runs once ispmux is dead, before the restart.
	afterCrash func(c *caseRun)
	// atRestart runs as soon as the clean ispmux is started, before it is
	// ready (a client that is at it again at once).
	atRestart func(c *caseRun)
	// staleClient: the client may keep an address nobody leases it (it
	// is not told: a revocation).
	staleClient bool
	// orphanOK: a lease the ISP granted that nobody uses may remain
	// (until it expires): the client is gone and ispmux never knew of it.
	orphanOK bool
	// env is added to the armed ispmux's environment.
	env []string
	// onboarding: the subscriber has no device record and its lease is
	// ispmux's own (the portal lab's walled garden, crash_onboard_test.go).
	// ispmux forgetting a lease it ACKed is put right by the client's next
	// renewal (NAK, DISCOVER, often the same address), so the reading
	// right after the restart counts too: lost there is lost.
	onboarding bool
	// endedByIspmux: ispmux ended the onboarding lease itself (a
	// handover): its client keeps it until its next REQUEST is NAKed, so
	// right after the restart it is not lost.
	endedByIspmux bool
}

// caseRun is one case's state.
type caseRun struct {
	t    *testing.T
	m    *matrix
	sub  lab.Sub
	cl   *client
	addr netip.Addr // the subscriber's address at the end of setup
	exp  time.Time  // ispmux's expiry of it then
	cid  []byte     // the client identifier Kea stored (raw clients send it)
	xid  dhcpv4.TransactionID
	acks int // raw exchanges answered
	// atCrash is the client's address while ispmux was dead (none:
	// invalid).
	atCrash netip.Addr
	// actOut is what the act's client printed (dhclient -r's lines),
	// shown when the armed failpoint is not hit.
	actOut string
}

// dhclientRelease runs dhclient -r for c's subscriber (it stops the
// running dhclient and sends a DHCPRELEASE) and keeps what it printed.
func (c *caseRun) dhclientRelease() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.m.r.topo.DhclientReleaseOutput(ctx, c.sub)
	c.actOut = out
	if err != nil {
		c.t.Errorf("dhclient -r: %v", err)
	}
}

// held are the onboarding addresses c's subscriber was seen to hold in the
// case (the garden is probed for them: see subView).
func (c *caseRun) held() []heldAddr {
	var out []heldAddr
	for _, a := range []netip.Addr{c.addr, c.atCrash} {
		if onboardingAddr(a) {
			out = append(out, heldAddr{mac: c.sub.MAC, addr: a})
		}
	}
	return out
}

// caseResult is one case in the report.
type caseResult struct {
	Exchange    string    `json:"exchange"`
	Point       string    `json:"point"`
	Then        string    `json:"then,omitempty"` // replay: the point of the second crash
	Client      string    `json:"client"`
	Hit         bool      `json:"hit"`
	Lost        int       `json:"lost"`
	Phantom     int       `json:"phantom"`
	Orphaned    int       `json:"orphaned"`
	StaleClient int       `json:"stale_client"`
	Pass        bool      `json:"pass"`
	Allowed     string    `json:"allowed,omitempty"`          // what this exchange may leave
	Replayed    uint64    `json:"intents_replayed,omitempty"` // at the last start
	RestartMS   int64     `json:"restart_to_ready_ms"`
	SettleMS    int64     `json:"settle_ms"`
	KeaAtCrash  string    `json:"kea_at_crash"`              // the subscriber's lease at its ISP while ispmux is dead
	AtCrash     string    `json:"client_at_crash,omitempty"` // the address on the client's interface then
	AtRestart   string    `json:"at_restart"`                // the subscriber's verdict right after the restart, before settling
	View        string    `json:"view"`                      // the subscriber's three views at the end
	Errors      []string  `json:"errors,omitempty"`
	Views       []subView `json:"-"`
}

type matrixReport struct {
	runInfo
	LeaseTimeS int `json:"lease_time_s"`
	// OnboardingLeaseS is the onboarding rows' lease (ispmux's own).
	OnboardingLeaseS int          `json:"onboarding_lease_time_s,omitempty"`
	Points           []string     `json:"points"`
	Exchanges        []string     `json:"exchanges"`
	Cases            int          `json:"cases"`
	Passed           int          `json:"passed"`
	Failed           int          `json:"failed"`
	Results          []caseResult `json:"results"`
}

type matrix struct {
	r       *rig
	fp      string
	base    []byte // ispmux's configuration as the lab wrote it
	conf    string // dhclient.conf
	short   string // dhclient.conf asking for an expiryLease lease
	cur     *proc
	clients []*client
	subs    []lab.Sub // every subscriber Kea knows: all are checked
}

func (c *caseRun) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf(format, args...)
}

// waitBound waits until sub's client holds an address and ispmux's binding
// is that address; it returns it.
func (m *matrix) waitBound(sub lab.Sub, within time.Duration, not netip.Addr) (netip.Addr, time.Time, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p, ok := m.r.topo.SubAddr(context.Background(), sub); ok && p.Addr() != not {
			if b, ok := m.r.boundNoFail(sub.MAC); ok && b.IP == p.Addr().String() {
				exp, _ := time.Parse(time.RFC3339, b.Expires)
				return p.Addr(), exp, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return netip.Addr{}, time.Time{}, false
}

// boundNoFail is bound without failing the test when ispmux is down.
func (r *rig) boundNoFail(mac string) (ctlsock.BindingStatus, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := ctlsock.FetchStatus(ctx, r.sock())
	if err != nil {
		return ctlsock.BindingStatus{}, false
	}
	for _, b := range st.Bindings {
		if strings.EqualFold(b.MAC, mac) && !b.Static {
			return b, true
		}
	}
	return ctlsock.BindingStatus{}, false
}

// keaLease returns sub's lease at its ISP's Kea (any state), the newest.
func (m *matrix) keaLease(sub lab.Sub) (lab.KeaLease, bool) {
	ls, err := m.r.isp(sub.ISP).Leases(context.Background())
	if err != nil {
		return lab.KeaLease{}, false
	}
	var best lab.KeaLease
	found := false
	for _, l := range ls {
		if strings.EqualFold(l.HWAddr, sub.MAC) && (!found || l.CLTT.After(best.CLTT)) {
			best, found = l, true
		}
	}
	return best, found
}

// keaAddr returns the lease of address a at isp's Kea.
func (m *matrix) keaAddr(isp string, a netip.Addr) (lab.KeaLease, bool) {
	ls, err := m.r.isp(isp).Leases(context.Background())
	if err != nil {
		return lab.KeaLease{}, false
	}
	for _, l := range ls {
		if l.Address == a {
			return l, true
		}
	}
	return lab.KeaLease{}, false
}

// waitKea waits until cond holds for sub's Kea lease (ok false: none).
func (m *matrix) waitKea(sub lab.Sub, within time.Duration, cond func(l lab.KeaLease, ok bool) bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l, ok := m.keaLease(sub)
		if cond(l, ok) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// bindWith starts a client of kind for c.sub with the clean ispmux and
// waits until it is bound (setup of most exchanges).
func (c *caseRun) bindWith(kind string) {
	c.t.Helper()
	m := c.m
	switch kind {
	case "dhclient":
		c.cl = m.r.startDhclient(c.sub, m.conf)
	case "udhcpc":
		c.cl = m.r.startUdhcpc(c.sub)
	}
	m.clients = append(m.clients, c.cl)
	a, exp, ok := m.waitBound(c.sub, 15*time.Second, netip.Addr{})
	if !ok {
		c.fatalf("setup: %s (%s) not bound; client:\n%s\nispmux:\n%s", c.sub.Name, kind, c.cl.out.String(), lastLines(m.r.log.String(), 20))
	}
	c.addr, c.exp = a, exp
	if l, ok := m.keaLease(c.sub); ok && l.ClientID != "" {
		c.cid, _ = hexColon(l.ClientID)
	}
}

func hexColon(s string) ([]byte, error) {
	hw, err := net.ParseMAC(s) // colon-separated hex of any length ParseMAC accepts
	if err == nil {
		return hw, nil
	}
	var out []byte
	for _, f := range strings.Split(s, ":") {
		v, err := strconv.ParseUint(f, 16, 8)
		if err != nil {
			return nil, err
		}
		out = append(out, byte(v))
	}
	return out, nil
}

// rawMsg is a DHCP message the test sends as c.sub's client.
type rawMsg struct {
	typ                dhcpv4.MessageType
	xid                dhcpv4.TransactionID // zero: a new one
	ciaddr, reqIP, sid net.IP
	// unicast: to ispmux (the gateway's MAC and address) from ciaddr;
	// otherwise broadcast, from ciaddr if set (a rebinding client), else
	// from 0.0.0.0.
	unicast bool
}

// frame builds m as an Ethernet frame from c.sub; it returns its xid.
func (c *caseRun) frame(m rawMsg) ([]byte, dhcpv4.TransactionID) {
	c.t.Helper()
	hw, _ := net.ParseMAC(c.sub.MAC)
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(m.typ), dhcpv4.WithHwAddr(hw)}
	if m.xid != (dhcpv4.TransactionID{}) {
		mods = append(mods, dhcpv4.WithTransactionID(m.xid))
	}
	if m.ciaddr != nil {
		mods = append(mods, dhcpv4.WithClientIP(m.ciaddr))
	}
	if m.reqIP != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(m.reqIP)))
	}
	if m.sid != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(m.sid)))
	}
	if len(c.cid) > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, c.cid))
	}
	d, err := dhcpv4.New(mods...)
	if err != nil {
		c.fatalf("%v", err)
	}
	dst, sip, dip := layers_bcast, net.IPv4zero, net.IPv4bcast
	if m.ciaddr != nil {
		sip = m.ciaddr
	}
	if m.unicast {
		dst, _ = net.ParseMAC(c.m.r.topo.Appliance.Access[0].MAC)
		dip = net.ParseIP(lab.Gateway)
	}
	f, err := clientFrame(hw, dst, sip, dip, d.ToBytes())
	if err != nil {
		c.fatalf("%v", err)
	}
	return f, d.TransactionID
}

// send sends msgs back to back from c.sub and, with wait > 0, returns the
// answer to the first.
func (c *caseRun) send(wait time.Duration, msgs ...rawMsg) *dhcpv4.DHCPv4 {
	c.t.Helper()
	var frames [][]byte
	var xid dhcpv4.TransactionID
	for i, m := range msgs {
		f, x := c.frame(m)
		if i == 0 {
			xid = x
		}
		frames = append(frames, f)
	}
	c.xid = xid
	ans, err := rawExchange(c.sub.NS, c.sub.If, frames, xid, wait)
	if err != nil {
		c.fatalf("raw %s from %s: %v", msgs[0].typ, c.sub.Name, err)
	}
	return ans
}

// raw sends one broadcast message (see rawMsg) and, with wait > 0,
// returns the answer.
func (c *caseRun) raw(typ dhcpv4.MessageType, ciaddr, reqIP, sid net.IP, wait time.Duration) *dhcpv4.DHCPv4 {
	c.t.Helper()
	return c.send(wait, rawMsg{typ: typ, ciaddr: ciaddr, reqIP: reqIP, sid: sid})
}

// rawDORA gets c.sub a lease with hand-built DISCOVER and REQUEST (one
// every 50 ms until answered, for up to within) and puts the address on
// its interface, as a client's script would.
func (c *caseRun) rawDORA(within time.Duration) (netip.Addr, bool) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		off := c.send(50*time.Millisecond, rawMsg{typ: dhcpv4.MessageTypeDiscover})
		if off == nil || off.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		for range 5 {
			ack := c.send(200*time.Millisecond, rawMsg{typ: dhcpv4.MessageTypeRequest, xid: off.TransactionID,
				reqIP: off.YourIPAddr, sid: off.ServerIdentifier()})
			if ack == nil {
				continue
			}
			if ack.MessageType() != dhcpv4.MessageTypeAck {
				break
			}
			a := addrOf(ack.YourIPAddr)
			_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "replace", a.String()+"/24", "dev", c.sub.If)
			return a, true
		}
	}
	return netip.Addr{}, false
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

var layers_bcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// rebind sends the REQUEST of a client in REBINDING state (RFC 2131
// §4.3.2: broadcast, ciaddr set, neither server identifier nor requested
// address), waiting up to wait for the answer.
func (c *caseRun) rebind(wait time.Duration) *dhcpv4.DHCPv4 {
	ip := net.IP(c.addr.AsSlice())
	return c.raw(dhcpv4.MessageTypeRequest, ip, nil, nil, wait)
}

// setConfig rewrites ispmux's configuration (base, with edit applied to
// c.sub's [[subscriber]] entry) and, if ispmux runs, sends it SIGHUP and
// waits for the reload.
func (c *caseRun) reconfigure(edit func(entry string) string) {
	c.t.Helper()
	m := c.m
	cfg := string(m.base)
	start := strings.Index(cfg, "[[subscriber]]\nmac = "+strconv.Quote(c.sub.MAC))
	if start < 0 {
		c.fatalf("no entry for %s in the config", c.sub.MAC)
	}
	end := strings.Index(cfg[start+1:], "[[subscriber]]")
	if end < 0 {
		end = len(cfg)
	} else {
		end += start + 1
	}
	cfg = cfg[:start] + edit(cfg[start:end]) + cfg[end:]
	if err := os.WriteFile(m.r.cfg, []byte(cfg), 0o644); err != nil {
		c.fatalf("%v", err)
	}
	if m.cur != nil && !m.cur.exited() {
		before := strings.Count(m.cur.log.String(), "msg=reloaded")
		_ = m.cur.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !m.cur.exited() && strings.Count(m.cur.log.String(), "msg=reloaded") == before {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// theExchanges are the matrix's rows.
func theExchanges() []exchange {
	fp := failpoint.RelayBeforeSend
	bind := []string{fp, failpoint.BindBeforeCommit, failpoint.BindAfterCommit, failpoint.BindAfterAck}
	end := []string{failpoint.EndAfterIntent, failpoint.EndAfterSend, failpoint.EndAfterComplete}
	// The store's binding journal: crashes between its write and its
	// fdatasync, and before the writers are released.
	bindJ := append(slices.Clone(bind), failpoint.JournalAfterWrite, failpoint.JournalAfterSync)
	// A DORA's act and settle: dhclient started, and bound again after the
	// restart.
	startDhclient := func(c *caseRun) {
		c.cl = c.m.r.startDhclient(c.sub, c.m.conf)
		c.m.clients = append(c.m.clients, c.cl)
	}
	dhclientBound := func(c *caseRun) {
		if _, _, ok := c.m.waitBound(c.sub, 20*time.Second, netip.Addr{}); !ok {
			c.t.Errorf("dhclient not bound after the restart; client:\n%s", lastLines(c.cl.out.String(), 10))
		}
	}
	return []exchange{
		{
			name: "DORA", sub: "s1", client: "dhclient", points: bindJ,
			act:    startDhclient,
			settle: dhclientBound,
		},
		{
			// The same, but the client is gone at the crash (unplugged)
			// and never retries: what is left is what ispmux alone
			// makes of it. A crash after the ISP's ACK and before the
			// commit leaves the lease at the ISP, unknown to ispmux,
			// until it expires (allowed: not a release, decline or
			// revocation; nobody can know).
			name: "DORA, client gone at the crash", sub: "s1", client: "dhclient, killed at the crash", points: bind, orphanOK: true,
			act: startDhclient,
			afterCrash: func(c *caseRun) {
				c.cl.kill()
				_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
			},
		},
		{
			// The binding's journal record starts a background
			// checkpoint at once (ISPMUX_JOURNAL_MAX_PENDING=1, a knob
			// of the failpoints build): the journal swaps files and the
			// record is written into bbolt by a transaction of its own,
			// racing the ACK. Before its commit the record is only in
			// the file just left (replayed at the restart); after it,
			// bbolt holds it and still lists it as pending (skipped by
			// the replay, as journal-lsn covers it).
			name: "DORA (background checkpoint)", sub: "s1", client: "dhclient",
			points: []string{failpoint.BgCheckpointBeforeCommit, failpoint.BgCheckpointAfterCommit},
			env:    []string{"ISPMUX_JOURNAL_MAX_PENDING=1"},
			act:    startDhclient,
			settle: dhclientBound,
		},
		{
			name: "renew", sub: "s2", client: "udhcpc (SIGUSR1: unicast REQUEST)", points: bindJ,
			setup: func(c *caseRun) { c.bindWith("udhcpc") },
			act: func(c *caseRun) {
				c.afterISPT1() // before it, ispmux answers itself
				c.cl.signal(syscall.SIGUSR1)
			},
			settle: func(c *caseRun) {
				// The client renews again (at T1 it would; here at
				// once) until ispmux's binding is extended.
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					if b, ok := c.m.r.boundNoFail(c.sub.MAC); ok && b.IP == c.addr.String() {
						if exp, _ := time.Parse(time.RFC3339, b.Expires); exp.After(c.exp) {
							return
						}
					}
					c.cl.signal(syscall.SIGUSR1)
					time.Sleep(1500 * time.Millisecond)
				}
				c.t.Errorf("binding of %v not extended by a renewal after the restart; client:\n%s", c.addr, lastLines(c.cl.out.String(), 10))
			},
		},
		{
			name: "rebind", sub: "s3", client: "hand-built REBINDING REQUEST (dhclient's lease)", points: bind,
			setup: func(c *caseRun) {
				c.bindWith("dhclient")
				c.cl.kill() // its address stays: the test is the client now
			},
			act: func(c *caseRun) {
				c.afterISPT1() // before it, ispmux answers itself
				if a := c.rebind(2 * time.Second); a != nil {
					c.acks++
				}
			},
			settle: func(c *caseRun) {
				// A rebinding client retransmits until answered.
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					if a := c.rebind(time.Second); a != nil {
						if a.MessageType() != dhcpv4.MessageTypeAck || !a.YourIPAddr.Equal(net.IP(c.addr.AsSlice())) {
							c.t.Errorf("rebinding answered %s for %v, want an ACK for %v", a.MessageType(), a.YourIPAddr, c.addr)
						}
						return
					}
				}
				c.t.Errorf("no answer to the rebinding REQUEST after the restart")
			},
		},
		{
			name: "release", sub: "s1", client: "dhclient -r", points: end,
			setup: func(c *caseRun) { c.bindWith("dhclient") },
			act: func(c *caseRun) {
				c.dhclientRelease()
			},
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea still holds the released lease after the restart")
				}
			},
		},
		{
			// The binding is journaled by the armed ispmux itself, so the
			// release's transaction is the checkpoint that writes it
			// into bbolt (and deletes it): a crash before the journal is
			// reset leaves the binding's record in the journal, which the
			// restart must not replay (the released binding would be
			// back).
			name: "bind, then release (journal checkpoint)", sub: "s1", client: "dhclient, then dhclient -r", points: []string{failpoint.CheckpointAfterCommit},
			act: func(c *caseRun) {
				c.bindWith("dhclient")
				c.dhclientRelease()
			},
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea still holds the released lease after the restart")
				}
			},
		},
		{
			// The client that released is back at once: it gets its
			// address again as soon as ispmux forwards, before the
			// pending RELEASE is replayed. The replay must not free
			// the new lease.
			name: "release, DORA again at the restart", sub: "s1", client: "dhclient -r, then hand-built DORA at the restart", points: end,
			setup: func(c *caseRun) { c.bindWith("dhclient") },
			act: func(c *caseRun) {
				c.dhclientRelease()
			},
			atRestart: func(c *caseRun) {
				if a, ok := c.rawDORA(10 * time.Second); !ok {
					c.t.Errorf("no lease again at the restart")
				} else {
					c.addr = a
				}
			},
			settle: func(c *caseRun) { time.Sleep(time.Second) }, // the replay's tick
		},
		{
			name: "decline", sub: "s3", client: "hand-built DECLINE (dhclient's lease)", points: end,
			setup: func(c *caseRun) {
				c.bindWith("dhclient")
				c.cl.kill()
			},
			act: func(c *caseRun) {
				ip := net.IP(c.addr.AsSlice())
				c.raw(dhcpv4.MessageTypeDecline, nil, ip, net.ParseIP(lab.Gateway), 0)
				_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
			},
			settle: func(c *caseRun) {
				// Kea keeps a declined address as a lease of nobody's
				// (no hardware address) in state 1.
				deadline := time.Now().Add(10 * time.Second)
				for {
					l, ok := c.m.keaAddr(c.sub.ISP, c.addr)
					if ok && l.State == lab.KeaStateDeclined {
						return
					}
					if time.Now().After(deadline) {
						c.t.Errorf("Kea did not record the DECLINE of %v after the restart: %+v %v", c.addr, l, ok)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
		},
		{
			name: "expiry", sub: "s2", client: fmt.Sprintf("dhclient (%d s lease), killed", expiryLease), points: []string{failpoint.ExpireBeforeCommit},
			setup: func(c *caseRun) { c.bindShortLeaseAndLeave() },
			act:   func(c *caseRun) {},
			settle: func(c *caseRun) {
				// Kea's lease runs out too (and is reclaimed, for the
				// record: state 2).
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea's lease did not run out")
				}
				time.Sleep(expiryTolerance)
				_ = c.m.r.isp(c.sub.ISP).ReclaimLeases(context.Background())
			},
		},
		{
			// The lease runs out while ispmux is down: the start ends
			// the binding it finds lapsed (never installed) with its
			// expired event, in a batch of Store.EndBindings, beside its
			// first DHCP. A crash after a batch is durable must not bring
			// the binding back, nor end it twice (the batches after it:
			// dhcpproxy's TestCrashBetweenRestartEnds, 4096 to a batch).
			name: "expiry (while down, ended at start)", sub: "s2", client: fmt.Sprintf("dhclient (%d s lease), killed", expiryLease),
			points: []string{failpoint.RestartEndAfterBatch},
			setup:  func(c *caseRun) { c.bindShortLeaseAndLeave() },
			whileDown: func(c *caseRun) {
				time.Sleep(time.Until(c.exp) + expiryTolerance)
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea's lease did not run out")
				}
				_ = c.m.r.isp(c.sub.ISP).ReclaimLeases(context.Background())
			},
			settle: func(c *caseRun) {
				if b, ok := c.m.r.boundNoFail(c.sub.MAC); ok {
					c.t.Errorf("after the restart, the lapsed binding is back: %+v", b)
				}
				// One expired event for the lease: durable with its end
				// in the crashed start's batch, not written again (the
				// restart's own ends run beside its DHCP: a moment).
				n := 0
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
					n = 0
					for _, e := range c.m.r.events() {
						if e.Kind == "expired" && strings.EqualFold(e.MAC, c.sub.MAC) && e.IP == c.addr.String() {
							n++
						}
					}
					if n > 1 || time.Now().After(deadline) {
						break
					}
				}
				if n != 1 {
					c.t.Errorf("%d expired events for %s's lease of %v, want 1", n, c.sub.MAC, c.addr)
				}
			},
		},
		{
			name: "revocation (blocked, SIGHUP)", sub: "s2", client: "udhcpc", points: end, staleClient: true,
			setup: func(c *caseRun) { c.bindWith("udhcpc") },
			act: func(c *caseRun) {
				c.reconfigure(func(e string) string { return strings.Replace(e, "\n", "\nblocked = true\n", 1) })
			},
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea still holds the revoked lease after the restart")
				}
			},
		},
		{
			name: "revocation (removed, SIGHUP)", sub: "s3", client: "dhclient", points: end, staleClient: true,
			setup: func(c *caseRun) { c.bindWith("dhclient") },
			act:   func(c *caseRun) { c.reconfigure(func(string) string { return "" }) },
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea still holds the revoked lease after the restart")
				}
			},
		},
		{
			// The operator blocks the subscriber while ispmux is
			// down: the start revokes the binding it restores.
			name: "revocation (blocked while down, at start)", sub: "s2", client: "udhcpc", points: end, staleClient: true,
			setup: func(c *caseRun) { c.bindWith("udhcpc") },
			whileDown: func(c *caseRun) {
				c.reconfigure(func(e string) string { return strings.Replace(e, "\n", "\nblocked = true\n", 1) })
			},
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("Kea still holds the revoked lease after the restart")
				}
			},
		},
		{
			// The subscriber moves to the other ISP while ispmux is
			// down: the start keeps its old binding, forwarding, as
			// a move's (make-before-break: a restart changes nothing
			// the subscriber sees). Its next REQUEST (a rebinding,
			// the client killed: the test is the client now) is
			// NAKed after the old binding ends, its lease at the old
			// ISP released.
			name: "revocation (moved to the other ISP while down, at the next REQUEST)", sub: "s1",
			client: "hand-built REBINDING REQUEST (dhclient's lease, killed)", points: end, staleClient: true,
			setup: func(c *caseRun) {
				c.bindWith("dhclient")
				c.cl.kill() // its address stays (beta does not know s1: it would only ask beta in vain)
			},
			whileDown: func(c *caseRun) {
				c.reconfigure(func(e string) string { return strings.Replace(e, `isp = "alpha"`, `isp = "beta"`, 1) })
			},
			act: func(c *caseRun) {
				if b, ok := c.m.r.boundNoFail(c.sub.MAC); !ok || b.ISP != "alpha" || b.IP != c.addr.String() {
					c.t.Errorf("after the start, s1's binding %+v %v; want alpha's binding of %v kept until its next message", b, ok, c.addr)
				}
				if l, ok := c.m.keaLease(c.sub); !ok || !l.Active(time.Now()) {
					c.t.Errorf("alpha's Kea released s1's lease at the start: %+v %v", l, ok)
				}
				c.rebind(0)
			},
			settle: func(c *caseRun) {
				if !c.m.waitKea(c.sub, 10*time.Second, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
					c.t.Errorf("alpha's Kea still holds the lease of the subscriber moved to beta after the restart")
				}
			},
		},
		{
			name: "NAK", sub: "s1", client: "dhclient INIT-REBOOT (address given to another)",
			points: []string{fp, failpoint.NakBeforeCommit, failpoint.NakAfterCommit},
			setup: func(c *caseRun) {
				// The address an earlier case left on the interface
				// (and ispmux's binding of it, restored at this start)
				// would satisfy bindWith before this dhclient has
				// written a fresh lease: then, killed at once, it kept
				// an expired one and restarted with a DISCOVER (no NAK,
				// the point never hit — 2 full matrices in 5).
				_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
				c.bindWith("dhclient")
				// dhclient writes its lease file after the script has
				// set the address: killed before that, it restarts with
				// a DISCOVER, not the INIT-REBOOT this case needs.
				lf, _ := c.m.r.topo.DhclientFiles(c.sub)
				want := "fixed-address " + c.addr.String() + ";"
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if b, err := os.ReadFile(lf); err == nil && strings.Contains(string(b), want) {
						break
					}
				}
				c.cl.kill() // its lease file stays: it restarts in INIT-REBOOT
				// The ISP gives the address to someone else: the
				// client's REQUEST for it gets a NAK.
				isp := c.m.r.isp(c.sub.ISP)
				ctx := context.Background()
				if _, err := isp.KeaCommand(ctx, "lease4-del", map[string]string{"ip-address": c.addr.String()}); err != nil {
					c.fatalf("%v", err)
				}
				if _, err := isp.KeaCommand(ctx, "lease4-add", map[string]any{"ip-address": c.addr.String(),
					"hw-address": "02:00:00:00:09:99", "subnet-id": lab.DHCPSubnetID, "valid-lft": 3600}); err != nil {
					c.fatalf("%v", err)
				}
			},
			act: func(c *caseRun) {
				c.afterISPT1() // before it, ispmux answers the INIT-REBOOT itself
				c.cl = c.m.r.startDhclient(c.sub, c.m.conf)
				c.m.clients = append(c.m.clients, c.cl)
			},
			settle: func(c *caseRun) {
				if _, _, ok := c.m.waitBound(c.sub, 25*time.Second, c.addr); !ok {
					c.t.Errorf("dhclient not bound to a new address after the NAK and the restart; client:\n%s", lastLines(c.cl.out.String(), 12))
				}
			},
		},
	}
}

// replays are the cases that crash twice: in end/after-intent, then at the
// restart in replay/after-send (the intent was sent again and not yet
// completed), then restart clean.
var replayOf = []string{"release", "decline", "revocation (blocked, SIGHUP)", "revocation (blocked while down, at start)"}

// matrixShards is how many labs the matrix's cases are spread over, each
// running its share beside the others (the onboarding cases have a portal
// lab of their own beside them): on one lab the cases took ~340 s, most
// of it waiting for a lease's renewal time, not working.
const matrixShards = 3

// newMatrix builds a lab for the matrix's cases and the matrix's view of
// it; its processes are killed when t ends.
func newMatrix(t *testing.T, fp string) *matrix {
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: matrixLease})
	m := &matrix{r: r, fp: fp}
	var err error
	if m.base, err = os.ReadFile(r.cfg); err != nil {
		t.Fatal(err)
	}
	m.conf = r.writeClientConf("")
	m.short = r.writeClientConf(fmt.Sprintf("send dhcp-lease-time %d;\n", expiryLease))
	for _, s := range r.topo.Subscribers {
		if s.Role == lab.RoleValid {
			m.subs = append(m.subs, s)
		}
	}
	t.Cleanup(func() {
		for _, c := range m.clients {
			c.kill()
		}
		m.cur.kill9()
	})
	return m
}

func TestCrashMatrix(t *testing.T) {
	t.Parallel()
	fp := failpointBinary(t)
	start := time.Now()
	// The harness is checked on the first shard's lab, before any case.
	first := newMatrix(t, fp)
	selfCheck := t.Run("the harness sees lost, phantom and orphaned leases", first.selfCheck)
	first.r.t = t
	if !selfCheck {
		t.Fatal("the views cannot be trusted: no case run")
	}
	exs := theExchanges()
	obs := theOnboardingExchanges()
	only := os.Getenv("ISPMUX_CRASH_ONLY") // a substring of "exchange/point": run those cases only
	type crashCase struct {
		ex          exchange
		point, then string
		onboarding  bool
	}
	var cases []crashCase
	add := func(ex exchange, point, then string, onboarding bool) {
		name := ex.name + "/" + point
		if then != "" {
			name += "+" + then
		}
		if only == "" || strings.Contains(name, only) {
			cases = append(cases, crashCase{ex, point, then, onboarding})
		}
	}
	for _, ex := range exs {
		for _, p := range ex.points {
			add(ex, p, "", false)
		}
	}
	for _, ex := range exs {
		for _, name := range replayOf {
			if ex.name == name {
				add(ex, failpoint.EndAfterIntent, failpoint.ReplayAfterSend, false)
			}
		}
	}
	for _, ex := range obs {
		for _, p := range ex.points {
			add(ex, p, "", true)
		}
	}
	// Each shard runs its cases in order on a lab of its own, beside the
	// other shards; results keep the cases' order.
	results := make([]caseResult, len(cases))
	ran := make([]bool, len(cases))
	runShard := func(t *testing.T, m *matrix, onboarding bool, k, n int) {
		j := 0
		for i, c := range cases {
			if c.onboarding != onboarding {
				continue
			}
			j++
			if (j-1)%n != k {
				continue
			}
			name := c.ex.name + "/" + c.point
			if c.then != "" {
				name += "+" + c.then
			}
			results[i] = caseResult{Exchange: c.ex.name, Point: c.point, Then: c.then, Client: c.ex.client}
			t.Run(name, func(t *testing.T) { m.runCase(t, c.ex, c.point, c.then, &results[i]) })
			m.r.t = t
			ran[i] = true
		}
	}
	some := func(onboarding bool) bool {
		for _, c := range cases {
			if c.onboarding == onboarding {
				return true
			}
		}
		return false
	}
	t.Run("shards", func(t *testing.T) {
		for k := range matrixShards {
			if !some(false) {
				break
			}
			t.Run(fmt.Sprintf("lab%d", k), func(t *testing.T) {
				t.Parallel()
				m := first
				if k > 0 {
					m = newMatrix(t, fp)
				} else {
					m.r.t = t
				}
				runShard(t, m, false, k, matrixShards)
			})
		}
		// The onboarding exchanges, on a portal lab of their own.
		if some(true) {
			t.Run("onboarding", func(t *testing.T) {
				t.Parallel()
				runShard(t, newOnboardingMatrix(t, fp), true, 0, 1)
			})
		}
	})
	var done []caseResult
	for i, res := range results {
		if ran[i] {
			done = append(done, res)
		}
	}
	results = done
	rep := &matrixReport{LeaseTimeS: int(matrixLease / time.Second), OnboardingLeaseS: int(onboardLease / time.Second), Points: failpoint.Points}
	for _, ex := range exs {
		rep.Exchanges = append(rep.Exchanges, ex.name)
	}
	rep.Exchanges = append(rep.Exchanges, "replay")
	for _, ex := range obs {
		rep.Exchanges = append(rep.Exchanges, ex.name)
	}
	rep.Results = results
	rep.Cases = len(results)
	for _, res := range results {
		if res.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	rep.runInfo = newRunInfo(start)
	t.Logf("failpoint matrix: %d cases, %d passed, %d failed, %.0f s", rep.Cases, rep.Passed, rep.Failed, rep.DurationS)
	for _, res := range results {
		mark := "PASS"
		if !res.Pass {
			mark = "FAIL"
		} else if res.Orphaned > 0 || res.StaleClient > 0 {
			mark = "PASS*"
		}
		t.Logf("  %s %-30s %-22s %-18s lost %d phantom %d orphaned %d  %s", mark, res.Exchange, res.Point, res.Then, res.Lost, res.Phantom, res.Orphaned, res.View)
	}
	if only == "" {
		writeReport(t, func(rr *reliabilityReport) { rr.Matrix = rep })
	}
}

// selfCheck makes each kind of inconsistency happen on purpose, with the
// real views, and checks that it is seen: a check that cannot fail proves
// nothing.
func (m *matrix) selfCheck(t *testing.T) {
	r := m.r
	r.t = t
	m.reset(t)
	m.cur = r.launch(m.fp)
	if _, err := r.waitReady(m.cur, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	c := &caseRun{t: t, m: m, sub: r.sub("s1")}
	c.bindWith("dhclient")
	expect := func(what string, want func(verdict) bool) {
		t.Helper()
		vs, ds, err := r.checkViews([]lab.Sub{c.sub}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !want(ds[0]) {
			t.Errorf("%s: the views say %s: %s", what, ds[0], vs[0])
		} else {
			t.Logf("%s: %s: %s", what, ds[0], vs[0])
		}
	}
	expect("bound", func(d verdict) bool { return !d.bad() && !d.StaleClient })
	isp := r.isp(c.sub.ISP)
	ctx := context.Background()
	// The ISP frees the lease behind ispmux's back.
	if _, err := isp.KeaCommand(ctx, "lease4-del", map[string]string{"ip-address": c.addr.String()}); err != nil {
		t.Fatal(err)
	}
	expect("lease deleted at the ISP", func(d verdict) bool { return d.Phantom && !d.Lost && !d.Orphaned })
	if _, err := isp.KeaCommand(ctx, "lease4-add", map[string]any{"ip-address": c.addr.String(), "hw-address": c.sub.MAC,
		"subnet-id": lab.DHCPSubnetID, "valid-lft": int(matrixLease / time.Second)}); err != nil {
		t.Fatal(err)
	}
	expect("lease given back", func(d verdict) bool { return !d.bad() })
	// ispmux forgets it (its store removed while it is down).
	if err := m.cur.term(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(r.dir, "state")); err != nil {
		t.Fatal(err)
	}
	m.cur = r.launch(m.fp)
	if _, err := r.waitReady(m.cur, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	expect("store lost", func(d verdict) bool { return d.Lost && !d.Phantom && !d.Orphaned })
	// Nobody uses it.
	c.cl.kill()
	_, _ = r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
	expect("client gone", func(d verdict) bool { return d.Orphaned && !d.Lost && !d.Phantom })
}

// reset brings the lab back to nothing: ispmux stopped and its state
// gone, clients killed, addresses and client lease files removed, Kea's
// leases deleted, the configuration as the lab wrote it.
func (m *matrix) reset(t *testing.T) {
	m.cur.kill9()
	m.cur = nil
	for _, c := range m.clients {
		c.kill()
	}
	m.clients = nil
	for _, s := range m.r.topo.Subscribers {
		_, _ = m.r.run(s.NS, "ip", "addr", "flush", "dev", s.If)
		lf, pf := m.r.topo.DhclientFiles(s)
		_ = os.Remove(lf)
		_ = os.Remove(pf)
	}
	if err := os.RemoveAll(filepath.Join(m.r.dir, "state")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.r.cfg, m.base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.r.wipeKea(); err != nil {
		t.Fatal(err)
	}
}

// notHitState is what the failure of a case whose armed failpoint was not
// hit shows besides the logs: the still running ispmux's DHCP counters and
// the access ports' drops (did the client's message arrive, and was it
// dropped, why?), its binding of the subscriber, the subscriber's
// address and neighbours, and the ISPs' log lines of it.
func (m *matrix) notHitState(c *caseRun) string {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	st, err := ctlsock.FetchStatus(ctx, m.r.sock())
	cancel()
	if err != nil {
		fmt.Fprintf(&b, "status: %v\n", err)
	} else {
		keys := slices.Sorted(maps.Keys(st.DHCP))
		b.WriteString("dhcp counters:")
		for _, k := range keys {
			if st.DHCP[k] != 0 {
				fmt.Fprintf(&b, " %s=%d", k, st.DHCP[k])
			}
		}
		fmt.Fprintf(&b, "\npending intents: %d\n", st.PendingIntents)
		for _, p := range st.Ports {
			fmt.Fprintf(&b, "port %s: rx %d tx %d punts %d arp %d drops %v\n", p.Name, p.RxFrames, p.TxFrames, p.Punts, p.ARPReplies, p.Drops)
		}
		for _, bs := range st.Bindings {
			if strings.EqualFold(bs.MAC, c.sub.MAC) {
				fmt.Fprintf(&b, "binding: %+v\n", bs)
			}
		}
	}
	for _, args := range [][]string{{"ip", "-4", "addr", "show", "dev", c.sub.If}, {"ip", "neigh", "show"}} {
		out, err := m.r.run(c.sub.NS, args...)
		fmt.Fprintf(&b, "%s: %s%v\n", strings.Join(args, " "), out, errOrNil(err))
	}
	fmt.Fprintf(&b, "ISPs' log of %s:\n%s", c.sub.MAC, m.r.keaLogOf(c.sub.MAC, 10))
	return b.String()
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// runCase runs one case and fills res (also when it stops at a fatal
// error).
func (m *matrix) runCase(t *testing.T, ex exchange, point, then string, res *caseResult) {
	r := m.r
	r.t = t
	switch {
	case ex.orphanOK:
		res.Allowed = "orphaned (the client is gone; the lease expires at the ISP)"
	case ex.staleClient:
		res.Allowed = "stale client (it is not told of the revocation)"
	}
	defer func() {
		res.Pass = !t.Failed() && res.Hit && res.Lost == 0 && res.Phantom == 0 && (ex.orphanOK || res.Orphaned == 0) && (ex.staleClient || res.StaleClient == 0)
		if t.Failed() && len(res.Errors) == 0 {
			res.Errors = append(res.Errors, "see the test log")
		}
	}()
	m.reset(t)
	c := &caseRun{t: t, m: m, sub: r.sub(ex.sub)}
	if ex.setup != nil {
		m.cur = r.launch(m.fp)
		if _, err := r.waitReady(m.cur, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		ex.setup(c)
		if err := m.cur.term(); err != nil {
			t.Fatal(err)
		}
	}
	if ex.whileDown != nil {
		ex.whileDown(c)
	}
	m.cur = r.launch(m.fp, append([]string{"ISPMUX_FAILPOINT=" + point}, ex.env...)...)
	if _, err := r.waitReady(m.cur, 15*time.Second); err != nil && (ex.act != nil || !m.cur.exited()) {
		t.Fatalf("armed ispmux (%s): %v", point, err)
	}
	if ex.act != nil {
		ex.act(c)
	}
	within := 20 * time.Second
	if ex.name == "expiry" {
		within = time.Until(c.exp) + 10*time.Second
	}
	m.cur.wait(within)
	if err := diedAt(m.cur, point); err != nil {
		res.Errors = append(res.Errors, err.Error())
		client := ""
		if c.cl != nil && c.cl.out != nil {
			client = lastLines(c.cl.out.String(), 15)
		}
		t.Fatalf("%v\nispmux:\n%s\nclient:\n%s\nact:\n%s\n%s", err, lastLines(m.cur.log.String(), 25), client, c.actOut, m.notHitState(c))
	}
	res.Hit = true
	// What the ISP holds while ispmux is dead (did a message "sent" at
	// the crash reach it?).
	if l, ok := m.keaLease(c.sub); ok {
		res.KeaAtCrash = fmt.Sprintf("%s state %d, active %v", l.Address, l.State, l.Active(time.Now()))
	} else {
		res.KeaAtCrash = "none"
	}
	if p, ok := r.topo.SubAddr(context.Background(), c.sub); ok {
		c.atCrash = p.Addr()
		res.AtCrash = c.atCrash.String()
	}
	t.Logf("%s's lease at %s while ispmux is dead: %s; client: %s", c.sub.Name, c.sub.ISP, res.KeaAtCrash, cmp.Or(res.AtCrash, "none"))
	if ex.afterCrash != nil {
		ex.afterCrash(c)
	}
	if then != "" {
		m.cur = r.launch(m.fp, "ISPMUX_FAILPOINT="+then)
		m.cur.wait(20 * time.Second)
		if err := diedAt(m.cur, then); err != nil {
			res.Errors = append(res.Errors, err.Error())
			t.Fatal(err)
		}
	}
	m.cur = r.launch(m.fp)
	if ex.atRestart != nil {
		ex.atRestart(c)
	}
	ready, err := r.waitReady(m.cur, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res.RestartMS = ready.Milliseconds()
	// Before the client's retries and the replay (for the record: what
	// a client that never came back would leave; a lease lost there fails
	// the case, whatever the settling sees).
	if vs, d, err := m.atRestart(ex, c); err == nil {
		res.AtRestart = d.String()
		switch {
		case d.Lost && ex.staleClient:
			// Not lost: revoked, and the ISP not told yet (the replay).
			res.AtRestart = "revoked, ISP not told yet"
		case d.Lost && ex.endedByIspmux:
			res.AtRestart = "onboarding lease ended (handover), the client not NAKed yet"
		case d.Lost:
			// An acknowledged lease ispmux forgot: the subscriber's
			// traffic is dropped until its client's next renewal
			// (hours, for a real lease), even where the settling below
			// sees the client rebind.
			res.Lost++
			msg := fmt.Sprintf("LOST right after the restart after a crash at %s: %s", point, vs)
			res.Errors = append(res.Errors, msg)
			t.Error(msg)
		}
		t.Logf("right after the restart: %s (%s)", res.AtRestart, vs)
	}
	settled := time.Now()
	if ex.settle != nil {
		ex.settle(c)
	}
	// The restart's replay is done: no intent pending.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.status()
		if err != nil {
			t.Fatal(err)
		}
		res.Replayed = st.DHCP["intent_replayed"]
		if st.PendingIntents == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d intents still pending 10 s after the restart", st.PendingIntents)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.HasPrefix(point, "end/") && point != failpoint.EndAfterComplete && res.Replayed == 0 {
		// The intent was pending at the crash: this start must have
		// sent it again.
		t.Errorf("no intent replayed at the restart after a crash at %s", point)
	}
	vs, ds, err := r.checkViews(m.subs, 5*time.Second, c.held()...)
	res.SettleMS = time.Since(settled).Milliseconds()
	if err != nil {
		t.Fatal(err)
	}
	res.Views = vs
	for i, v := range vs {
		d := ds[i]
		if d.Lost {
			res.Lost++
		}
		if d.Phantom {
			res.Phantom++
		}
		if d.Orphaned {
			res.Orphaned++
		}
		if d.StaleClient {
			res.StaleClient++
		}
		if v.Sub == c.sub.Name {
			res.View = v.String() + ": " + d.String()
		}
		if d.Lost || d.Phantom || d.Orphaned && !ex.orphanOK || d.StaleClient && !ex.staleClient {
			msg := fmt.Sprintf("%s after a crash at %s: %s", d, point, v)
			res.Errors = append(res.Errors, msg)
			t.Errorf("%s\nKea's log of %s:\n%s", msg, v.MAC, r.keaLogOf(v.MAC, 12))
		}
	}
	if t.Failed() {
		t.Logf("ispmux log since the restart:\n%s", lastLines(m.cur.log.String(), 25))
	}
}

// atRestart reads c's subscriber's views right after the restart. An
// onboarding subscriber's is read again while it is lost, for up to 3 s
// (well within its client's T1: the garden may take a moment to answer the
// first probe).
func (m *matrix) atRestart(ex exchange, c *caseRun) (subView, verdict, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		vs, err := m.r.views([]lab.Sub{c.sub}, c.held()...)
		if err != nil {
			return subView{}, verdict{}, err
		}
		d := classify(vs[0], time.Now())
		if !d.Lost || !ex.onboarding || ex.endedByIspmux || time.Now().After(deadline) {
			return vs[0], d, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unitCrashCovers are the failpoints no exchange of the lab passes
// through, crashed at by a package's own crash test instead: the batches
// of a bulk device import (tenants' TestCrashMidDeviceImport: what the
// crash leaves is all in the store, the bindings' revalidation included)
// and ispmux compact, run with ispmux stopped (cmd/ispmux's
// TestCrashCompact), and the events-by-mac index's build at the first
// start after an upgrade (subscribers' TestMigrateMACIndexCrash). Each of
// those tests fails when a failpoint of its prefix (tenant/import-,
// compact/, migrate/) is not among its cases.
var unitCrashCovers = []string{failpoint.TenantImportBeforeBatch,
	failpoint.CompactBeforeCopy, failpoint.CompactAfterCopy, failpoint.CompactAfterRename,
	failpoint.MigrateAfterChunk}

// TestCrashMatrixCoversEveryPoint: every failpoint ispmux has is crashed
// at by some exchange of the matrix (a new transition adds its points to
// internal/failpoint and its exchange here, docs/ARCHITECTURE.md), and the
// matrix names no point that does not exist.
func TestCrashMatrixCoversEveryPoint(t *testing.T) {
	covered := map[string]bool{failpoint.ReplayAfterSend: len(replayOf) > 0}
	for _, p := range tenantCrashCovers { // TestTenants
		covered[p] = true
	}
	for _, p := range switchCrashCovers { // TestCrashMatrixSwitch
		covered[p] = true
	}
	for _, p := range backupCrashCovers { // TestCrashBackup
		covered[p] = true
	}
	for _, p := range unitCrashCovers { // package crash tests, no lab
		covered[p] = true
	}
	for _, ex := range append(theExchanges(), theOnboardingExchanges()...) {
		for _, p := range ex.points {
			covered[p] = true
		}
	}
	known := map[string]bool{}
	for _, p := range failpoint.Points {
		known[p] = true
		if !covered[p] {
			t.Errorf("failpoint %s: no exchange of the crash matrix passes through it", p)
		}
	}
	for p := range covered {
		if !known[p] {
			t.Errorf("the crash matrix names failpoint %s, which internal/failpoint does not list", p)
		}
	}
}

// TestReleaseRacesRenewal: a client renews (unicast REQUEST) and releases
// (RELEASE) back to back, as a client shut down in the middle of a renewal
// does. The ISP ACKs the REQUEST, then frees the lease on the RELEASE; the
// ACK reaches ispmux while (or after) it ends the binding for the RELEASE.
// ispmux must not be left with a binding: no crash here, only the order
// of a commit and a release.
func TestReleaseRacesRenewal(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 1, DHCP: true, LeaseTime: matrixLease})
	m := &matrix{r: r, fp: binPath}
	var err error
	if m.base, err = os.ReadFile(r.cfg); err != nil {
		t.Fatal(err)
	}
	m.subs = []lab.Sub{r.sub("s1")}
	t.Cleanup(func() { m.cur.kill9() })
	const rounds = 5
	phantoms := 0
	for i := 1; i <= rounds; i++ {
		m.reset(t)
		m.cur = r.launch(m.fp)
		if _, err := r.waitReady(m.cur, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		c := &caseRun{t: t, m: m, sub: r.sub("s1")}
		a, ok := c.rawDORA(10 * time.Second)
		if !ok {
			t.Fatal("no lease")
		}
		time.Sleep(matrixLease/2 + time.Second) // past the ISP's T1: the renewal goes to the ISP
		ip := net.IP(a.AsSlice())
		c.send(0, rawMsg{typ: dhcpv4.MessageTypeRequest, ciaddr: ip, unicast: true},
			rawMsg{typ: dhcpv4.MessageTypeRelease, ciaddr: ip, sid: net.ParseIP(lab.Gateway), unicast: true})
		_, _ = r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
		time.Sleep(time.Second)
		vs, ds, err := r.checkViews(m.subs, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ds[0].bad() {
			phantoms++
			t.Errorf("round %d: renewal and release back to back: %s: %s", i, ds[0], vs[0])
		} else {
			t.Logf("round %d: %s: %s", i, ds[0], vs[0])
		}
	}
	if phantoms > 0 {
		t.Logf("ispmux log:\n%s", lastLines(m.cur.log.String(), 15))
	}
}

// bindShortLeaseAndLeave binds the case's subscriber with dhclient asking
// for an expiryLease lease (c.addr, c.exp), then kills the client and
// takes its address away: the lease runs out unrenewed (the expiry rows).
func (c *caseRun) bindShortLeaseAndLeave() {
	c.cl = c.m.r.startDhclient(c.sub, c.m.short)
	c.m.clients = append(c.m.clients, c.cl)
	a, exp, ok := c.m.waitBound(c.sub, 15*time.Second, netip.Addr{})
	if !ok {
		c.fatalf("setup: not bound")
	}
	c.addr, c.exp = a, exp
	if time.Until(exp) > expiryLease*time.Second+time.Second {
		c.fatalf("lease until %v: Kea did not grant the %d s asked for", exp, expiryLease)
	}
	c.cl.kill()
	_, _ = c.m.r.run(c.sub.NS, "ip", "addr", "flush", "dev", c.sub.If)
}
