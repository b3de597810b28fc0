package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// countingStore is the rig's store with its writes counted.
type countingStore struct {
	*subscribers.Store
	writes atomic.Int64
}

func (s *countingStore) CommitBindingEvent(b subscribers.Binding, e subscribers.Event) (subscribers.Event, error) {
	s.writes.Add(1)
	return s.Store.CommitBindingEvent(b, e)
}

func (s *countingStore) EndBinding(access string, vlan uint16, mac subscribers.MAC, in *subscribers.Intent, e subscribers.Event) (subscribers.Intent, subscribers.Event, bool, error) {
	s.writes.Add(1)
	return s.Store.EndBinding(access, vlan, mac, in, e)
}

func (s *countingStore) CommitOnboarding(l subscribers.OnboardingLease, e subscribers.Event) (subscribers.Event, error) {
	s.writes.Add(1)
	return s.Store.CommitOnboarding(l, e)
}

func (s *countingStore) EndOnboarding(mac subscribers.MAC, e subscribers.Event) (subscribers.Event, bool, error) {
	s.writes.Add(1)
	return s.Store.EndOnboarding(mac, e)
}

func (s *countingStore) CompleteIntent(id uint64) error {
	s.writes.Add(1)
	return s.Store.CompleteIntent(id)
}

func (s *countingStore) CompleteIntents(ids []uint64) error {
	s.writes.Add(1)
	return s.Store.CompleteIntents(ids)
}

func (s *countingStore) AddEvent(e subscribers.Event) (subscribers.Event, error) {
	s.writes.Add(1)
	return s.Store.AddEvent(e)
}

// The switching rig: newPRig with a second ISP, beta (port 2, our
// 198.51.100.2, server 198.51.100.1), a 10-minute client lease cap, and
// the store's writes counted.
const betaPort = 2

var (
	betaGiaddr = netip.MustParseAddr("198.51.100.2")
	betaSID    = netip.MustParseAddr("198.51.100.1")
)

const (
	s1     = "02:00:00:00:01:01"
	s1MAC  = 0x020000000101
	s1Addr = "100.64.0.100"
)

func newSRig(t *testing.T) (*prig, *countingStore) {
	r := newPRig(t)
	cfg := r.p.config()
	cfg.Limits.ClientLeaseMax = 10 * time.Minute
	cfg.ISPs = append(cfg.ISPs, ISP{Index: 1, Name: "beta", Port: betaPort, MAC: upMAC + 1, Addr: betaGiaddr,
		Servers: []netip.Addr{betaSID}, CircuitID: "{interface}:{vlan}"})
	cs := &countingStore{Store: r.store}
	r.p = New(cfg, cs, r.p.reg, r.tab, r.snd, nil)
	return r, cs
}

// pastT1 moves the proxy's clock for subscribers' messages d ahead.
func (r *prig) pastT1(d time.Duration) {
	r.p.now = func() time.Time { return time.Now().Add(d) }
}

// Options the lab's ISP gives besides the lease: router, DNS, a classless
// route (121).
var (
	ispRouter = net.IPv4(100, 64, 0, 1)
	ispDNS    = net.IPv4(192, 0, 2, 53)
	ispRoute  = []byte{24, 10, 9, 8, 100, 64, 0, 1}
)

// keaT1 is kea() with the ISP's own T1 and T2 (58, 59), router, DNS and
// option 121.
func keaT1(t *testing.T, lease, t1 time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, lease)(m)
		if rep != nil && rep.MessageType() != dhcpv4.MessageTypeNak {
			rep.UpdateOption(dhcpv4.OptRenewTimeValue(t1))
			rep.UpdateOption(dhcpv4.OptRebindingTimeValue(t1 * 7 / 4))
			rep.UpdateOption(dhcpv4.OptRouter(ispRouter))
			rep.UpdateOption(dhcpv4.OptDNS(ispDNS))
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClasslessStaticRoute, ispRoute))
		}
		return rep
	}
}

// leaseOpts are a message's 51, 58 and 59.
func leaseOpts(m *dhcpv4.DHCPv4) [3]time.Duration {
	return [3]time.Duration{m.IPAddressLeaseTime(0), m.IPAddressRenewalTime(0), m.IPAddressRebindingTime(0)}
}

func wantLease(t *testing.T, what string, m *dhcpv4.DHCPv4, lease time.Duration) {
	t.Helper()
	lease = lease.Truncate(time.Second)
	want := [3]time.Duration{lease, (lease / 2).Truncate(time.Second), (lease * 7 / 8).Truncate(time.Second)}
	if got := leaseOpts(m); got != want {
		t.Errorf("%s: options 51/58/59 %v, want %v", what, got, want)
	}
}

// renewing is a RENEWING REQUEST (ciaddr, no server-id, no option 50) from
// m for ip, with a client identifier.
func renewing(t *testing.T, m string, ip string) *dhcpv4.DHCPv4 {
	return clientMsg(t, m, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(ip)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, []byte{1, 2, 0, 0, 0, 1, 1}))
}

// toPorts splits what the proxy sent so far by port.
func (r *prig) toPorts() map[uint8][]*dhcpv4.DHCPv4 {
	out := map[uint8][]*dhcpv4.DHCPv4{}
	for _, s := range r.snd.take() {
		out[s.port] = append(out[s.port], dhcpOf(s.frame))
	}
	return out
}

// OFFER and ACK carry ispmux's lease options: min(client_lease_max, the
// ISP's lease), T1 half of it, T2 7/8, never the ISP's 58/59.
func TestClientLeaseRewritten(t *testing.T) {
	r, _ := newSRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(keaT1(t, time.Hour, 20*time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v", got)
	}
	wantLease(t, "OFFER", got[0], 10*time.Minute)
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = r.serve(keaT1(t, time.Hour, 20*time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	wantLease(t, "ACK", got[0], 10*time.Minute)
	if !bytes.Equal(got[0].Options.Get(dhcpv4.OptionClasslessStaticRoute), ispRoute) || !got[0].Router()[0].Equal(ispRouter) {
		t.Errorf("ACK lost the ISP's options: %v", got[0])
	}
	// The binding keeps the ISP's lease and options as they were.
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	if b.LeaseTime != time.Hour || time.Until(b.Expires) < 59*time.Minute {
		t.Errorf("stored lease %v until %v, want the ISP's hour", b.LeaseTime, b.Expires)
	}
	// The client's own lease end, as the tenant API shows it beside the
	// ISP's (a trial's operator saw the ISP's only).
	if end, ok := r.p.ClientLeaseEnd("acc0", 0, s1MAC, b.ISP, b.IP); !ok || end.Before(time.Now().Add(9*time.Minute)) || end.After(time.Now().Add(11*time.Minute)) {
		t.Errorf("ClientLeaseEnd = %v, %v; want in 10 min (client_lease_max), not the ISP's hour", end, ok)
	}
	if _, ok := r.p.ClientLeaseEnd("acc0", 7, s1MAC, b.ISP, b.IP); ok {
		t.Error("ClientLeaseEnd on a circuit the subscriber is not bound on")
	}
	if _, ok := r.p.ClientLeaseEnd("nowhere", 0, s1MAC, b.ISP, b.IP); ok {
		t.Error("ClientLeaseEnd on an unknown access")
	}
	// Another ISP's binding, or another address, is not this lease's:
	// the store's binding read just before a move's commit (or a new
	// address's), the lease table's just after, would have shown one
	// ISP the client lease the device holds with another.
	if _, ok := r.p.ClientLeaseEnd("acc0", 0, s1MAC, "beta", b.IP); ok || b.ISP == "beta" {
		t.Errorf("ClientLeaseEnd of %s's lease on a binding of beta", b.ISP)
	}
	if _, ok := r.p.ClientLeaseEnd("acc0", 0, s1MAC, b.ISP, b.IP.Next()); ok {
		t.Error("ClientLeaseEnd of the lease at another address")
	}
	// An ISP lease shorter than the cap is given as it is.
	r2, _ := newSRig(t)
	got = r2.dora(s1, keaT1(t, 2*time.Minute, time.Minute), nil)
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	wantLease(t, "ACK of a 2-minute lease", got[0], 2*time.Minute)
}

// A renewal ispmux answers carries the siaddr, sname and file of the ISP's
// ACK (RFC 2131 table 3: every ACK has them; a CPE may read its next
// server or boot file at renewal). Before, they were zero in ispmux's
// ACKs (found by a trial against Kea with next-server, server-hostname and
// boot-file-name set). The boot fields survive a restart (the store).
// Fields the ISP used for options (option 52) are not kept as boot fields.
func TestLocalRenewalBootFields(t *testing.T) {
	r, _ := newSRig(t)
	next := net.IPv4(192, 0, 2, 50)
	boot := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := keaT1(t, time.Hour, 30*time.Minute)(m)
		if rep != nil {
			rep.ServerIPAddr, rep.ServerHostName, rep.BootFileName = next, "tftp.alpha.example", "cpe-alpha.cfg"
		}
		return rep
	}
	if got := r.dora(s1, boot, nil); len(got) != 1 || got[0].BootFileName != "cpe-alpha.cfg" {
		t.Fatalf("DORA: %v", got)
	}
	r.p.committing.Wait()
	if b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1))); len(b.Boot) != subscribers.BootLen {
		t.Fatalf("binding keeps %d bytes of boot fields", len(b.Boot))
	}
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[accPort]) != 1 || len(sent[upPort]) != 0 {
		t.Fatalf("renewal: %d answers, %d relayed", len(sent[accPort]), len(sent[upPort]))
	}
	ack := sent[accPort][0]
	if !ack.ServerIPAddr.Equal(next) || ack.ServerHostName != "tftp.alpha.example" || ack.BootFileName != "cpe-alpha.cfg" {
		t.Errorf("local ACK: siaddr %v, sname %q, file %q; want the ISP's", ack.ServerIPAddr, ack.ServerHostName, ack.BootFileName)
	}
	// An ACK whose sname carries options (option 52 = 2) keeps only its
	// file as a boot field.
	raw := ackWithOverload(t)
	if b := bootFields(raw); len(b) != subscribers.BootLen || bytes.ContainsFunc(b[4:68], func(c rune) bool { return c != 0 }) ||
		string(bytes.TrimRight(b[68:], "\x00")) != "f.cfg" {
		t.Errorf("boot fields of an ACK with options in sname: %q", b)
	}
	if b := bootFields(make([]byte, optionsStart+4)); b != nil {
		t.Errorf("boot fields of an ACK without: %q, want none", b)
	}
}

// ackWithOverload is a BOOTREPLY whose sname field carries options (option
// 52 = 2) and whose file field names a boot file.
func ackWithOverload(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, optionsStart)
	b[0] = byte(dhcpv4.OpcodeBootReply)
	copy(b[snameStart:], []byte{15, 3, 'i', 's', 'p', 255})
	copy(b[fileStart:], "f.cfg")
	copy(b[236:240], magicCookie[:])
	return append(b, optOverload, 1, 2, optMessageType, 1, byte(dhcpv4.MessageTypeAck), 255)
}

// A renewal before the ISP's T1 (RENEWING, REBINDING, INIT-REBOOT) is
// answered by ispmux from the stored binding: the ISP's options, the lease
// options rewritten (bounded by what is left of the ISP's lease), ispmux's
// server-id, no Option 82; nothing relayed, nothing written to the store.
func TestLocalRenewal(t *testing.T) {
	r, cs := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	r.p.notes.wait()
	before := cs.writes.Load()
	rebinding := clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(s1Addr)),
		dhcpv4.WithBroadcast(true))
	initReboot := clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))))
	for _, c := range []struct {
		name string
		m    *dhcpv4.DHCPv4
	}{{"RENEWING", renewing(t, s1, s1Addr)}, {"REBINDING", rebinding}, {"INIT-REBOOT", initReboot}} {
		r.fromClient(c.m)
		sent := r.toPorts()
		if len(sent[upPort]) != 0 || len(sent[betaPort]) != 0 {
			t.Errorf("%s relayed to the ISP before its T1", c.name)
		}
		if len(sent[accPort]) != 1 {
			t.Fatalf("%s: %d answers", c.name, len(sent[accPort]))
		}
		ack := sent[accPort][0]
		if ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != c.m.TransactionID || !ack.YourIPAddr.Equal(net.ParseIP(s1Addr)) ||
			!ack.ClientIPAddr.Equal(c.m.ClientIPAddr) || !bytes.Equal(ack.ClientHWAddr, mac(s1)) || ack.OpCode != dhcpv4.OpcodeBootReply {
			t.Errorf("%s: answer %v", c.name, ack)
		}
		if !ack.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) || ack.Options.Has(dhcpv4.OptionRelayAgentInformation) {
			t.Errorf("%s: server-id %v, option 82 %v", c.name, ack.ServerIdentifier(), ack.Options.Has(dhcpv4.OptionRelayAgentInformation))
		}
		if rt := ack.Router(); len(rt) != 1 || !rt[0].Equal(ispRouter) || len(ack.DNS()) != 1 || !ack.DNS()[0].Equal(ispDNS) ||
			!bytes.Equal(ack.Options.Get(dhcpv4.OptionClasslessStaticRoute), ispRoute) {
			t.Errorf("%s: not the ISP's options: %v", c.name, ack)
		}
		wantLease(t, c.name, ack, 10*time.Minute)
		if id := ack.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, c.m.Options.Get(dhcpv4.OptionClientIdentifier)) {
			t.Errorf("%s: client identifier %x, want the request's %x", c.name, id, c.m.Options.Get(dhcpv4.OptionClientIdentifier))
		}
	}
	r.p.notes.wait()
	if w := cs.writes.Load(); w != before {
		t.Errorf("%d store writes for local renewals", w-before)
	}
	if c := r.p.Counters(); c["renewal_local"] != 3 || c["relayed_request"] != 1 {
		t.Errorf("counters %v", c)
	}
	// Near the ISP's expiry the client lease is what is left of it.
	r.pastT1(55 * time.Minute)
	r.p.setLimits(func(l *Limits) { l.ClientLeaseMax = 24 * time.Hour })
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	// T1 (30 min) passed: relayed now. The ISP's lease as the local answer
	// would bound it is checked on the binding directly.
	if at := ispRenewal(&b); at.Sub(b.Expires.Add(-time.Hour)) != 30*time.Minute {
		t.Errorf("ISP's T1 at %v after the lease's start, want 30m (its option 58)", at.Sub(b.Expires.Add(-time.Hour)))
	}
	l, _ := r.p.leases.get(subKey{circuitKey{accPort, 0}, s1MAC})
	sk := subKey{circuitKey{accPort, 0}, s1MAC}
	if !r.p.answerLocally(r.p.circuits[circuitKey{accPort, 0}], sk, l, renewing(t, s1, s1Addr).ToBytes(), nil, anyCustomer, false, b.Expires.Add(-90*time.Second)) {
		t.Fatal("not answered 90 s before the ISP's expiry")
	}
	ack := r.toPorts()[accPort][0]
	wantLease(t, "90 s before the ISP's expiry", ack, 90*time.Second)
	if r.p.answerLocally(r.p.circuits[circuitKey{accPort, 0}], sk, l, renewing(t, s1, s1Addr).ToBytes(), nil, anyCustomer, false, b.Expires.Add(-500*time.Millisecond)) {
		t.Error("answered with less than a second of the ISP's lease left")
	}
}

// Bindings restored at a start keep the ACK's options: local renewals
// still carry the ISP's router and DNS.
func TestLocalRenewalAfterRestart(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if n, err := r.p.Restore(time.Now()); err != nil || n != 1 {
		t.Fatalf("restored %d, %v", n, err)
	}
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
		t.Fatalf("sent %v", sent)
	}
	ack := sent[accPort][0]
	if ack.MessageType() != dhcpv4.MessageTypeAck || len(ack.Router()) != 1 || !ack.Router()[0].Equal(ispRouter) || len(ack.DNS()) != 1 || !ack.DNS()[0].Equal(ispDNS) {
		t.Errorf("local renewal after a restart: %v", ack)
	}
}

// Past the ISP's T1 a renewal is relayed (Option 82 as the binding's); the
// ISP's ACK is committed (renewed) and delivered rewritten.
func TestRenewalPastT1Relayed(t *testing.T) {
	r, cs := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	b0, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	r.pastT1(31 * time.Minute)
	before := cs.writes.Load()
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.snd.take()
	if len(sent) != 1 || sent[0].port != upPort {
		t.Fatalf("sent %d frames, want the renewal relayed", len(sent))
	}
	up := dhcpOf(sent[0].frame)
	if !bytes.Equal(up.Options.Get(dhcpv4.OptionRelayAgentInformation), b0.Option82) || !up.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) {
		t.Errorf("relayed %v: want the binding's Option 82 %x", up, b0.Option82)
	}
	r.snd.mu.Lock()
	r.snd.frames = sent
	r.snd.mu.Unlock()
	got := r.serve(keaT1(t, time.Hour, 30*time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	wantLease(t, "relayed ACK", got[0], 10*time.Minute)
	if cs.writes.Load() == before {
		t.Error("the ISP's ACK was not committed")
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	if evs[len(evs)-1].Kind != subscribers.EventRenewed {
		t.Errorf("last event %+v, want renewed", evs[len(evs)-1])
	}
	if c := r.p.Counters(); c["renewal_relayed"] != 1 || c["renewal_local"] != 0 {
		t.Errorf("counters %v", c)
	}
}

// Past the ISP's T1, the ISP's NAK is passed on and the binding ends.
func TestRenewalPastT1NAK(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.pastT1(31 * time.Minute)
	r.fromClient(renewing(t, s1, s1Addr))
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak || !got[0].ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Fatalf("got %v, want the ISP's NAK as ours", got)
	}
	if r.tab.isBound(s1MAC) || r.p.Leases() != 0 {
		t.Error("still bound after the ISP's NAK")
	}
}

// The ISP silent to a renewal past its T1: ispmux answers from the binding
// (bounded by the ISP's expiry), the timeout event says so; the next
// renewal is relayed again.
func TestRenewalSilenceAnsweredLocally(t *testing.T) {
	r, cs := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	at := b.Expires.Add(-4 * time.Minute) // 4 minutes of the ISP's lease left
	r.p.now = func() time.Time { return at }
	before := cs.writes.Load()
	req := renewing(t, s1, s1Addr)
	r.fromClient(req)
	if got := r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil }); len(got) != 0 {
		t.Fatalf("got %v before the timeout", got)
	}
	r.p.expire(at.Add(time.Second)) // past dhcp.timeout (300 ms in the rig)
	r.p.notes.wait()
	sent := r.toPorts()
	if len(sent[accPort]) != 1 {
		t.Fatalf("sent %v, want the answer from the binding", sent)
	}
	ack := sent[accPort][0]
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID || !ack.Router()[0].Equal(ispRouter) {
		t.Errorf("answer %v", ack)
	}
	wantLease(t, "answer after silence", ack, 4*time.Minute-time.Second)
	evs, _ := r.store.Events(0, 10)
	if e := evs[len(evs)-1]; e.Kind != subscribers.EventTimeout || !strings.Contains(e.Reason, "answered by ispmux") {
		t.Errorf("last event %+v", e)
	}
	// Only the timeout event was written.
	if w := cs.writes.Load() - before; w != 1 {
		t.Errorf("%d store writes, want the timeout event only", w)
	}
	// The next renewal goes to the ISP again.
	r.p.now = func() time.Time { return at.Add(2 * time.Minute) }
	r.fromClient(renewing(t, s1, s1Addr))
	if sent := r.toPorts(); len(sent[upPort]) != 1 {
		t.Errorf("the next renewal was not relayed: %v", sent)
	}
	if c := r.p.Counters(); c["renewal_local_after_silence"] != 1 || c["renewal_relayed"] != 2 {
		t.Errorf("counters %v", c)
	}
}

// The expired event of a lease whose renewals the ISP left unanswered (an
// outage) says so; a lease whose subscriber did not renew says "lease
// expired" only. A trial read the outage's expiries as devices gone.
func TestExpiryAfterSilenceSaysWhy(t *testing.T) {
	for _, silent := range []bool{true, false} {
		r, _ := newSRig(t)
		r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
		r.p.committing.Wait()
		b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
		if silent {
			at := b.Expires.Add(-4 * time.Minute)
			r.p.now = func() time.Time { return at }
			r.fromClient(renewing(t, s1, s1Addr))
			r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil })
			r.p.expire(at.Add(time.Second))
			r.p.notes.wait()
		}
		r.p.expire(b.Expires.Add(time.Hour))
		r.p.notes.wait()
		evs, _ := r.store.Events(0, 100)
		e := evs[len(evs)-1]
		switch {
		case e.Kind != subscribers.EventExpired:
			t.Errorf("silent %v: last event %+v, want expired", silent, e)
		case silent && !strings.Contains(e.Reason, "did not answer the renewals"):
			t.Errorf("renewals unanswered: expired %q", e.Reason)
		case !silent && e.Reason != "lease expired":
			t.Errorf("never renewed: expired %q", e.Reason)
		}
	}
}

// Past the ISP's expiry the binding is gone (the tick) and the client's
// next REQUEST gets ispmux's NAK, never relayed.
func TestPastExpiryNAK(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Minute, 30*time.Second), nil)
	r.p.expire(time.Now().Add(2 * time.Minute))
	if r.p.Leases() != 0 {
		t.Fatal("not expired")
	}
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("sent %v, want ispmux's NAK only", sent)
	}
}

// The NAK rule: a REQUEST without a server identifier naming anything but
// the subscriber's binding at its current ISP is NAKed by ispmux (its
// server-id), never relayed; with no binding at all too (a restart loses
// nothing: the rule reads the store's bindings and the registry). A
// SELECTING REQUEST (server-id) and a REQUEST naming nothing are relayed.
func TestNAKRule(t *testing.T) {
	r, _ := newSRig(t)
	// No binding: INIT-REBOOT for an address it held elsewhere.
	r.fromClient(initReboot(t, s1, netip.MustParseAddr("10.1.2.3")))
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
		t.Fatalf("sent %v", sent)
	}
	if n := sent[accPort][0]; n.MessageType() != dhcpv4.MessageTypeNak || !n.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Errorf("answer %v, want ispmux's NAK", n)
	}
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	// Bound: a RENEWING REQUEST for another address.
	r.fromClient(renewing(t, s1, "100.64.0.7"))
	sent = r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST for another address: %v", sent)
	}
	if !r.tab.isBound(s1MAC) {
		t.Error("the binding ended for a REQUEST of another address")
	}
	// A SELECTING REQUEST names a server: relayed.
	sel := clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("100.64.0.7"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
	r.fromClient(sel)
	if sent := r.toPorts(); len(sent[upPort]) != 1 {
		t.Errorf("SELECTING REQUEST not relayed: %v", sent)
	}
	if c := r.p.Counters(); c["request_nak"] != 2 {
		t.Errorf("counters %v", c)
	}
}

// newSRigWithBetaCustomer is the switching rig with s1 bound at alpha.
func boundAtAlpha(t *testing.T) (*prig, *countingStore) {
	r, cs := newSRig(t)
	if got := r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	r.p.committing.Wait()
	r.snd.take()
	return r, cs
}

func (r *prig) moveTo(isp string) {
	r.t.Helper()
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: isp, Source: "api"}); err != nil {
		r.t.Fatal(err)
	}
}

// checkReleasedToAlpha checks that exactly one RELEASE of s1's lease went
// to alpha (and nothing else to any ISP), and the revoked event at alpha
// does not name beta.
func (r *prig) checkReleasedToAlpha(sent map[uint8][]*dhcpv4.DHCPv4) {
	r.t.Helper()
	if len(sent[upPort]) != 1 || sent[upPort][0].MessageType() != dhcpv4.MessageTypeRelease || !sent[upPort][0].ClientIPAddr.Equal(net.ParseIP(s1Addr)) ||
		!sent[upPort][0].Options.Has(dhcpv4.OptionRelayAgentInformation) {
		r.t.Errorf("to alpha: %v, want the RELEASE of %s with Option 82", sent[upPort], s1Addr)
	}
	if rel := sent[upPort]; len(rel) == 1 && strings.Contains(rel[0].Message(), "beta") {
		r.t.Errorf("the RELEASE to alpha names beta: %q", rel[0].Message())
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	n := 0
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked {
			n++
			if e.ISP != "alpha" || strings.Contains(e.Reason, "beta") {
				r.t.Errorf("revoked event %+v: want alpha's, not naming beta", e)
			}
		}
	}
	if n != 1 {
		r.t.Errorf("%d revoked events, want 1", n)
	}
}

// A device moved to beta: its alpha binding keeps forwarding (nothing sent,
// still bound and stored) until its next REQUEST, which ispmux NAKs after
// ending the old binding (RELEASE to alpha); its DISCOVER then goes to
// beta.
func TestMoveMakeBeforeBreak(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.moveTo("beta")
	if n := r.p.RevalidateMACs([]uint64{s1MAC, 0x020000000102}); n != 1 {
		t.Fatalf("RevalidateMACs = %d, want 1", n)
	}
	if sent := r.snd.take(); len(sent) != 0 {
		t.Errorf("sent %d frames at the move", len(sent))
	}
	if !r.tab.isBound(s1MAC) || r.p.MovesPending() != 1 {
		t.Fatal("the old binding stopped forwarding at the move")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil {
		t.Errorf("the old binding left the store at the move: %v", err)
	}
	// Its renewal: no local answer, no relay; the old binding ends.
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak || !sent[accPort][0].ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Fatalf("to the subscriber %v, want ispmux's NAK", sent[accPort])
	}
	if len(sent[betaPort]) != 0 {
		t.Errorf("relayed to beta: %v", sent[betaPort])
	}
	r.checkReleasedToAlpha(sent)
	if r.tab.isBound(s1MAC) || r.p.MovesPending() != 0 {
		t.Error("still bound after the NAK")
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	if sent := r.toPorts(); len(sent[betaPort]) != 1 || sent[betaPort][0].MessageType() != dhcpv4.MessageTypeDiscover {
		t.Errorf("DISCOVER after the move: %v, want it relayed to beta", sent)
	}
	if c := r.p.Counters(); c["move_nak"] != 1 || c["move_pending"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// A moved device's DISCOVER (no renewal first) ends the old binding too,
// and the RELEASE to alpha goes before the DISCOVER to beta.
func TestMoveThenDiscover(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	sent := r.snd.take()
	if len(sent) != 2 || sent[0].port != upPort || sent[1].port != betaPort ||
		dhcpOf(sent[0].frame).MessageType() != dhcpv4.MessageTypeRelease || dhcpOf(sent[1].frame).MessageType() != dhcpv4.MessageTypeDiscover {
		t.Fatalf("sent %d frames, want the RELEASE to alpha, then the DISCOVER to beta", len(sent))
	}
	if r.tab.isBound(s1MAC) {
		t.Error("still bound at alpha")
	}
}

// The operator's immediate cut: RELEASE to alpha at once, unbound; the
// device's next REQUEST is NAKed.
func TestMoveImmediate(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.moveTo("beta")
	if n := r.p.RevalidateMACsImmediate([]uint64{s1MAC}); n != 1 {
		t.Fatalf("RevalidateMACsImmediate = %d", n)
	}
	r.checkReleasedToAlpha(r.toPorts())
	if r.tab.isBound(s1MAC) {
		t.Error("still bound after the immediate cut")
	}
	r.fromClient(renewing(t, s1, s1Addr))
	if sent := r.toPorts(); len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak || len(sent[upPort])+len(sent[betaPort]) != 0 {
		t.Errorf("renewal after the cut: %v, want ispmux's NAK only", sent)
	}
}

// A moved device that never asks: its old binding ends client_lease_max
// after the move (every lease ispmux gave it has run out). One moved back
// before that keeps its binding.
func TestMoveDeadline(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.p.expire(time.Now().Add(9 * time.Minute))
	if !r.tab.isBound(s1MAC) {
		t.Fatal("cut before client_lease_max")
	}
	r.p.expire(time.Now().Add(10*time.Minute + time.Second))
	r.checkReleasedToAlpha(r.toPorts())
	if r.tab.isBound(s1MAC) || r.p.MovesPending() != 0 || r.p.Counters()["move_cut"] != 1 {
		t.Errorf("not cut at client_lease_max: counters %v", r.p.Counters())
	}

	r2, _ := boundAtAlpha(t)
	r2.moveTo("beta")
	r2.p.RevalidateMACs([]uint64{s1MAC})
	r2.moveTo("alpha")
	r2.p.expire(time.Now().Add(11 * time.Minute))
	if !r2.tab.isBound(s1MAC) || len(r2.snd.take()) != 0 {
		t.Error("a device moved back lost its binding")
	}
	r2.fromClient(renewing(t, s1, s1Addr))
	if sent := r2.toPorts(); len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("renewal after moving back: %v, want the local ACK", sent)
	}
}

// A device pinned to its access (acc0), bound at alpha, is moved to beta
// while ispmux is down (or the move was pending at the restart: the same
// restore). Its old binding is restored, forwarding, as a move's without
// a restart: ended by its next REQUEST (NAKed, RELEASE to alpha) or at the
// move's deadline, client_lease_max from the restore. Before, the restore
// revoked it at once (RELEASE to alpha): a restart cut the pinned device,
// offline until its next renewal, then a DORA.
func TestMovedPinnedDeviceKeptAcrossRestart(t *testing.T) {
	restart := func(t *testing.T) (*prig, time.Time) {
		r, cs := boundAtAlpha(t)
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "beta", Access: "acc0", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, nil)
		if n, err := r.p.Restore(start); err != nil || n != 1 {
			t.Fatalf("restored %d, %v; want the old binding", n, err)
		}
		r.p.notes.wait()
		if sent := r.toPorts(); len(sent[upPort]) != 0 || !r.tab.isBound(s1MAC) || r.p.MovesPending() != 1 {
			t.Fatalf("after the restart: sent to alpha %v, forwarding %v, moves pending %d (counters %v); want the old binding kept with its deadline",
				sent[upPort], r.tab.isBound(s1MAC), r.p.MovesPending(), r.p.Counters())
		}
		if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil {
			t.Fatalf("the old binding left the store at the restart: %v", err)
		}
		return r, start
	}
	t.Run("its renewal ends it", func(t *testing.T) {
		r, _ := restart(t)
		r.fromClient(renewing(t, s1, s1Addr))
		sent := r.toPorts()
		if len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("to the subscriber %v, want ispmux's NAK", sent[accPort])
		}
		r.checkReleasedToAlpha(sent)
		if r.tab.isBound(s1MAC) || r.p.MovesPending() != 0 || r.p.Counters()["move_nak"] != 1 {
			t.Errorf("after the NAK: forwarding %v, moves pending %d (counters %v)", r.tab.isBound(s1MAC), r.p.MovesPending(), r.p.Counters())
		}
	})
	t.Run("the deadline ends it", func(t *testing.T) {
		r, start := restart(t)
		clm := r.p.Limits().ClientLeaseMax
		r.p.expire(start.Add(clm - time.Second))
		if !r.tab.isBound(s1MAC) || len(r.snd.take()) != 0 {
			t.Fatal("cut before client_lease_max from the restore")
		}
		r.p.expire(start.Add(clm + time.Second))
		r.checkReleasedToAlpha(r.toPorts())
		if r.tab.isBound(s1MAC) || r.p.MovesPending() != 0 || r.p.Counters()["move_cut"] != 1 {
			t.Errorf("client_lease_max after the restore: forwarding %v, moves pending %d (counters %v); want it cut",
				r.tab.isBound(s1MAC), r.p.MovesPending(), r.p.Counters())
		}
	})
}

// Blocked, suspended or removed devices keep today's behaviour: their
// binding ends at once, whatever RevalidateMACs is asked.
func TestRevalidateMACsBlockedIsImmediate(t *testing.T) {
	r, _ := boundAtAlpha(t)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "beta", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if n := r.p.RevalidateMACs([]uint64{s1MAC}); n != 1 {
		t.Fatalf("RevalidateMACs = %d", n)
	}
	if r.tab.isBound(s1MAC) || r.p.MovesPending() != 0 {
		t.Error("a blocked device kept forwarding")
	}
}

// A configuration reload that moves a subscriber (Revalidate) is
// make-before-break too.
func TestRevalidateMoveMakeBeforeBreak(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.moveTo("beta")
	if n := r.p.Revalidate(); n != 1 || !r.tab.isBound(s1MAC) || r.p.MovesPending() != 1 {
		t.Errorf("Revalidate = %d, bound %v, pending %d", n, r.tab.isBound(s1MAC), r.p.MovesPending())
	}
}

// A renewal's ACK from the old ISP arriving after the move binds nothing:
// the device is NAKed (no ACK after the move, which the deadline relies
// on).
func TestMoveDuringRelayedRenewal(t *testing.T) {
	r, _ := boundAtAlpha(t)
	r.pastT1(31 * time.Minute)
	r.fromClient(renewing(t, s1, s1Addr))
	toISP := r.snd.take()
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.snd.mu.Lock()
	r.snd.frames = toISP
	r.snd.mu.Unlock()
	got := r.serve(keaT1(t, time.Hour, 30*time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("got %v, want a NAK", got)
	}
}

// BenchmarkLocalRenewal measures the proxy's local renewal path: a
// subscriber's RENEWING REQUEST (a punted frame) answered from its binding
// (the ACK frame handed to the sender), over 10,000 bound subscribers.
func BenchmarkLocalRenewal(b *testing.B) {
	st, err := subscribers.Open(b.TempDir()+"/s.db", subscribers.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const n = 10000
	now := time.Now()
	ack, _ := dhcpv4.NewReplyFromRequest(discover(b, dhcpv4.WithHwAddr(mac(s1))), dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))), dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(30*time.Minute)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(52*time.Minute)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(16, 32))), dhcpv4.WithOption(dhcpv4.OptRouter(ispRouter)),
		dhcpv4.WithOption(dhcpv4.OptDNS(ispDNS)), dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, ispRoute))
	opts := ackOptions(ack.ToBytes())
	reg := registry.New()
	frames := make([][]byte, n)
	for i := range n {
		m := [6]byte{2, 0x20, 0, 0, byte(i >> 8), byte(i)}
		ip := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		reg.Put(binding.MAC48(m), registry.Entry{CustomerID: "c-s1", ISP: "alpha", Source: "api"}, false)
		if err := st.CommitBinding(subscribers.Binding{MAC: m, Access: "acc0", ISP: "alpha", Customer: "c-s1", IP: ip, ServerID: ispSID,
			Expires: now.Add(time.Hour), Updated: now, Options: opts, LeaseTime: time.Hour}); err != nil {
			b.Fatal(err)
		}
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(m[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IP(ip.AsSlice())),
			dhcpv4.WithOption(dhcpv4.OptParameterRequestList(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer)))
		frames[i] = fib.UDPFrame(accMAC, binding.MAC48(m), 0, ip, ourSID, 68, 67, req.ToBytes())
	}
	snd := &countingSender{}
	p := New(Config{Limits: Limits{Timeout: time.Second, MaxPending: 4096, MACRate: 1000, MACBurst: 1 << 20, CircuitRate: 1 << 30, CircuitBurst: 1 << 30, MaxBindingsPerCircuit: 1 << 20},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs:     []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr, Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
	}, st, reg, nopTables{}, snd, nil)
	if k, err := p.Restore(now); err != nil || k != n {
		b.Fatalf("restored %d, %v", k, err)
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p.HandleFrame(accPort, frames[i%n])
	}
	b.StopTimer()
	if got := snd.n.Load(); got != int64(b.N) {
		b.Fatalf("%d answers for %d renewals (counters %v)", got, b.N, p.Counters())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renewals/s")
}

// nopTables accepts every binding (the benchmark's restore of 10,000).
type nopTables struct{}

func (nopTables) CheckBind(binding.Binding) error     { return nil }
func (nopTables) Bind(binding.Binding) error          { return nil }
func (nopTables) Unbind(uint8, uint16, uint64) bool   { return true }
func (nopTables) NextHopMAC(isp uint8) (uint64, bool) { return gwMAC, true }
func (nopTables) Holder(uint8, netip.Addr) (binding.Binding, bool) {
	return binding.Binding{}, false
}

// countingSender counts the frames it is handed and keeps none.
type countingSender struct{ n atomic.Int64 }

func (s *countingSender) Inject(uint8, []byte) bool { s.n.Add(1); return true }

// A renewal the ISP answered late, committed between the expiry scan and
// the end of the lease it saw, is not ended by that scan (the soak found
// it: Kea and the client held a lease ispmux had just ended); another
// lease of the same scan, in the same batch (expireEach), still ends.
func TestExpiryDoesNotEndARenewal(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.dora(s2, byMACKea, nil) // an hour too, a moment later
	r.p.committing.Wait()
	sk := subKey{circuitKey{accPort, 0}, s1MAC}
	old, ok := r.p.leases.get(sk)
	if !ok {
		t.Fatal("no lease after the DORA")
	}
	// The scan sees the leases as ended...
	due := r.p.leases.expired(old.expiresAt().Add(time.Minute), 1<<30)
	if len(due) != 2 || due[0].k != sk || due[1].k.mac != s2MAC {
		t.Fatalf("expired: %v", due)
	}
	// ...and the ISP's ACK of a renewal is committed before the scan ends
	// it.
	r.pastT1(31 * time.Minute)
	r.fromClient(renewing(t, s1, s1Addr))
	if got := r.serve(keaT1(t, time.Hour, 30*time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: got %v", got)
	}
	if n := r.p.expireEach(due); n != 1 {
		t.Fatalf("%d ended, want 1 (s2's): the renewed binding was ended by the scan of its old lease", n)
	}
	if _, ok := r.p.leases.get(due[1].k); ok || r.tab.isBound(s2MAC) {
		t.Error("s2's lease, which ran out, was not ended with it")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s2))); err == nil {
		t.Error("s2's binding still stored")
	}
	if _, ok := r.p.leases.get(sk); !ok || !r.tab.isBound(s1MAC) {
		t.Error("the renewed binding is gone")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil {
		t.Errorf("store: %v", err)
	}
	if c := r.p.Counters(); c["expiry_superseded"] != 1 {
		t.Errorf("counters %v", c)
	}
	// The current version still expires.
	cur, _ := r.p.leases.get(sk)
	if r.p.expireEach([]held{{sk, cur}}) != 1 {
		t.Error("the current lease was not ended")
	}
	if c := r.p.Counters(); c["expired"] != 2 {
		t.Errorf("%d expired counted, want 2", c["expired"])
	}
}

// A renewal before the ISP's T1 but with less than ClientLeaseMax of the
// ISP's lease left is relayed, not answered with a shortened lease
// (busybox udhcpc takes a lease under 30 s as 30 s and renews too late).
func TestShortISPLeaseRelayed(t *testing.T) {
	for _, c := range []struct {
		cap   time.Duration
		local bool
	}{{30 * time.Second, false}, {10 * time.Second, true}} {
		r, _ := newSRig(t)
		r.p.setLimits(func(l *Limits) { l.ClientLeaseMax = c.cap })
		r.dora(s1, keaT1(t, 30*time.Second, 15*time.Second), nil)
		r.p.committing.Wait()
		r.pastT1(5 * time.Second) // before the ISP's T1, 25 s of its lease left
		r.fromClient(renewing(t, s1, s1Addr))
		sent := r.toPorts()
		if local := len(sent[accPort]) == 1 && len(sent[upPort]) == 0; local != c.local {
			t.Errorf("cap %v: to the subscriber %d, to the ISP %d; want answered locally %v", c.cap, len(sent[accPort]), len(sent[upPort]), c.local)
		}
	}
}

// A device moved to another customer of the same ISP since it was bound
// (the ISP's API, the operator, a portal claim) has its next renewal
// relayed, not answered from the binding: the ISP sees the new customer's
// subscriber-id at once and decides. Its ACK binds the device to the new
// customer (and the renewals after it are answered locally again); its
// silence leaves the device the lease it holds. Before, ispmux answered
// until the ISP's T1, up to half a lease, and the ISP went on seeing the
// old customer's subscriber-id.
func TestRenewalAfterCustomerChangeRelayed(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	r.fromClient(renewing(t, s1, s1Addr))
	if sent := r.toPorts(); len(sent[accPort]) != 1 || len(sent[upPort]) != 0 {
		t.Fatalf("renewal before the change: answered %d, relayed %d; want it answered locally", len(sent[accPort]), len(sent[upPort]))
	}
	// s1 now belongs to c-s9, at the same ISP.
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s9", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[accPort]) != 0 || len(sent[upPort]) != 1 {
		t.Fatalf("renewal after the change: answered %d, relayed %d; want it relayed", len(sent[accPort]), len(sent[upPort]))
	}
	if sub, err := parseOption82(sent[upPort][0].Options.Get(dhcpv4.OptionRelayAgentInformation)); err != nil || string(sub[subSubscriberID]) != "c-s9" {
		t.Errorf("relayed with subscriber-id %q (%v), want the new customer's", sub[subSubscriberID], err)
	}
	if c := r.p.Counters(); c["renewal_customer_changed"] != 1 {
		t.Errorf("renewal_customer_changed = %d, want 1", c["renewal_customer_changed"])
	}
	// The ISP knows c-s9 and ACKs: bound to c-s9, answered locally after.
	anyCustomerISP := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.ParseIP(s1Addr)),
			dhcpv4.WithServerIP(net.IP(ispSID.AsSlice())), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(30*time.Minute)))
		return rep
	}
	r.fromServerAt(ispSID, anyCustomerISP(sent[upPort][0]))
	r.p.committing.Wait()
	if got := r.toPorts(); len(got[accPort]) != 1 || got[accPort][0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the ISP's ACK for c-s9: the client got %v", got[accPort])
	}
	if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || b.Customer != "c-s9" {
		t.Errorf("binding after the ISP's ACK: customer %q (%v), want c-s9", b.Customer, err)
	}
	r.fromClient(renewing(t, s1, s1Addr))
	if sent := r.toPorts(); len(sent[accPort]) != 1 || len(sent[upPort]) != 0 {
		t.Errorf("renewal once bound to c-s9: answered %d, relayed %d; want it answered locally", len(sent[accPort]), len(sent[upPort]))
	}
}

// boundUplinkDown is newSRig with s1 bound at alpha (ISP lease an hour,
// T1 30 minutes), then a proxy restored from its store whose tables have
// alpha's router unresolved (its uplink down); pastGrace: the proxy
// started an hour ago (past startupGrace).
func boundUplinkDown(t *testing.T, pastGrace bool) *prig {
	t.Helper()
	r, cs := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	r.p = New(r.p.config(), cs, r.p.reg, downISPTables{r.tab, 0}, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if pastGrace {
		r.p.born = time.Now().Add(-time.Hour)
	}
	return r
}

// wantUnreachable fails the test unless the store's last event is a
// rejected one saying the ISP is unreachable.
func (r *prig) wantUnreachable(what string) {
	r.t.Helper()
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	if e := evs[len(evs)-1]; e.Kind != subscribers.EventRejected || !strings.Contains(e.Reason, "ISP unreachable") {
		r.t.Errorf("%s: last event %+v, want rejected (ISP unreachable)", what, e)
	}
}

// A renewal past the ISP's T1 while the ISP's router is unresolved (its
// uplink down) is answered from the binding, as when the ISP's servers are
// silent, not refused: a field trial's uplink down for 50 s past its
// clients' T1 had them drop addresses the ISP still leased them (ISP
// unreachable, a rejected event), where a silent server had them answered.
func TestRenewalUplinkDownAnsweredLocally(t *testing.T) {
	r := boundUplinkDown(t, true)
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	at := b.Expires.Add(-4 * time.Minute) // past T1, 4 minutes of the ISP's lease left
	r.p.now = func() time.Time { return at }
	req := renewing(t, s1, s1Addr)
	r.fromClient(req)
	r.p.notes.wait()
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
		t.Fatalf("sent %v, want the answer from the binding, nothing upstream", sent)
	}
	ack := sent[accPort][0]
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID || !ack.Router()[0].Equal(ispRouter) {
		t.Errorf("answer %v", ack)
	}
	wantLease(t, "answer with the uplink down", ack, 4*time.Minute)
	if c := r.p.Counters(); c["renewal_local_no_next_hop"] != 1 || c["no_next_hop"] != 1 {
		t.Errorf("counters %v", c)
	}
	evs, _ := r.store.Events(0, 100)
	for _, e := range evs {
		if e.Kind == subscribers.EventRejected {
			t.Errorf("event %+v, want no refusal", e)
		}
	}
	// A DISCOVER (no binding to answer from) is still refused, saying so.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	r.p.notes.wait()
	r.wantUnreachable("DISCOVER with the uplink down")
}

// With the uplink down, a renewal of a device moved to another customer
// of the ISP since it was bound is not answered from the binding: the
// ISP decides a customer change (renewal_customer_changed), and it cannot
// be asked now. Refused, saying why; the change counted once (a review: it
// was answered, and counted twice).
func TestRenewalUplinkDownCustomerChanged(t *testing.T) {
	r := boundUplinkDown(t, true)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s9", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(renewing(t, s1, s1Addr)) // before the ISP's T1
	r.p.notes.wait()
	if sent := r.toPorts(); len(sent[accPort]) != 0 || len(sent[upPort]) != 0 {
		t.Fatalf("sent %v, want nothing: the ISP decides a customer change", sent)
	}
	c := r.p.Counters()
	if c["renewal_customer_changed"] != 1 || c["renewal_local_no_next_hop"] != 0 || c["no_next_hop"] != 1 {
		t.Errorf("counters %v", c)
	}
	r.wantUnreachable("a moved device's renewal with the uplink down")
}

// Just after a start, a renewal for an ISP whose router is not resolved
// yet waits for it (startupWait), and when it stays unresolved is answered
// from the binding, not refused: an ispmux restarted while an ISP's uplink
// is down answered its subscribers' renewals never (a review).
func TestRenewalUplinkDownAtStartAnswered(t *testing.T) {
	r := boundUplinkDown(t, false)
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	at := b.Expires.Add(-4 * time.Minute) // past T1
	r.p.now = func() time.Time { return at }
	r.fromClient(renewing(t, s1, s1Addr))
	r.p.committing.Wait() // startupWait, then the answer
	r.p.notes.wait()
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("sent %v, want the answer from the binding", sent)
	}
	if c := r.p.Counters(); c["renewal_local_no_next_hop"] != 1 || c["no_next_hop_startup"] != 1 || c["waited_for_next_hop"] != 1 {
		t.Errorf("counters %v", c)
	}
}
