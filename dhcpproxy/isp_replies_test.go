package dhcpproxy

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// fromClientUnicast sends a client message as a unicast frame to our MAC
// and access address, from src (a RENEWING client, RFC 2131 §4.4.5).
func (r *prig) fromClientUnicast(m *dhcpv4.DHCPv4, src netip.Addr) {
	mac := binding.MAC48([6]byte(m.ClientHWAddr))
	f := fib.UDPFrame(accMAC, mac, 0, src, ourSID, 68, 67, m.ToBytes())
	r.p.HandleFrame(accPort, f)
}

// twoServersBound is twoServers (no override) with s1 bound through the
// first server (192.0.2.1), at 100.64.0.101.
func twoServersBound(t *testing.T) (*prig, netip.Addr) {
	r, second := twoServers(t, false)
	r.bindVia(ispSID, ispSID)
	return r, second
}

// A RENEWING REQUEST goes, per RFC 2131 §4.4.5, to the server that granted
// the lease only (the client unicasts it to its server identifier, which
// ispmux emulates). ispmux relays it to every server of the ISP: a server
// that does not hold the lease and is authoritative (docs/ISP-SERVERS.md
// configures Kea and dnsmasq so) NAKed it, and that NAK — from a server
// the lease is not even with — ended the subscriber's binding and was
// delivered, while the holder's ACK that followed was dropped (no
// transaction). It goes to the lease's server only now.
func TestRenewalToLeaseServerOnly(t *testing.T) {
	r, second := twoServersBound(t)
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("renewal not relayed to the lease's server (relayed to %v; counters %v)", up, r.p.Counters())
	}
	if m := up[second]; m != nil {
		t.Logf("renewal of a lease granted by %v also relayed to %v", ispSID, second)
		// The second server knows no such lease: an authoritative server NAKs.
		r.fromServerAt(second, serverReply(m, dhcpv4.MessageTypeNak, second, second))
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	_, toClient := r.relayedTo()
	for _, m := range toClient {
		t.Logf("subscriber got %s", m.MessageType())
	}
	if !r.tab.isBound(s1MAC) {
		t.Errorf("binding granted by %v ended by the NAK of %v, which does not hold it", ispSID, second)
	}
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("subscriber got %d messages, want only its server's ACK", len(toClient))
	}
}

// A DHCPNAK answers a DHCPREQUEST only (RFC 2131 §3.1, §4.3.2, Table 2).
// A bound subscriber's DHCPINFORM (Windows sends them while bound, for
// WPAD) that the ISP answers with a NAK must not end its lease: the
// client itself (BOUND, waiting for an ACK to its INFORM) would not
// drop its address for it. It did; such a NAK is dropped now
// (nak_not_request).
func TestNakToInformKeepsBinding(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	inf := clientMsg(t, s1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP(s1Addr)))
	r.fromClientUnicast(inf, netip.MustParseAddr(s1Addr))
	r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		if m.MessageType() != dhcpv4.MessageTypeInform {
			t.Fatalf("relayed %s", m.MessageType())
		}
		return serverReply(m, dhcpv4.MessageTypeNak, ispSID, ispSID)
	})
	if !r.tab.isBound(s1MAC) {
		t.Errorf("a NAK to the subscriber's INFORM ended its binding (counters %v)", r.p.Counters())
	}
}

// An ACK whose yiaddr is a class E address (240.0.0.0/4, reserved, RFC
// 1112 §4 / RFC 6890; not a usable unicast host address) is bound like any
// other: unusable() rejected 0, broadcast, multicast, loopback and link
// local, but not 240/4. It is declined now.
func TestClassEAddressRefused(t *testing.T) {
	r := newPRig(t)
	got := r.dora(s1, keaAcking(t, "240.0.0.5"), nil)
	if r.tab.isBound(s1MAC) {
		t.Errorf("bound to 240.0.0.5 (class E); subscriber got %v", got[0].MessageType())
	}
}

// pendKey has no circuit: a device that sends the same xid on another
// circuit (re-plugged mid-exchange; clients keep the xid across their
// retransmissions) updates the transaction's Option 82 (the new circuit's
// circuit-id) but not its circuit: the ISP's OFFER, which echoes the new
// Option 82, was delivered on the old circuit, where the device no longer
// is. The new circuit's message starts a transaction of its own now.
func TestSameXidOtherCircuitDeliveredToNewCircuit(t *testing.T) {
	r := newPRig(t)
	et := newEngineTables()
	cfg := r.p.config()
	cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc0", Port: accPort, VLAN: 5, MAC: accMAC, Addr: ourSID})
	r.p = New(cfg, r.store, r.p.reg, et, r.snd, nil)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d) // on acc0 (VLAN 0): the ISP does not answer
	r.snd.take()
	r.fromClientVLAN(5, d) // the same DISCOVER (xid) on acc1
	var up []sent
	for _, s := range r.snd.take() {
		if s.port == upPort {
			up = append(up, s)
		}
	}
	if len(up) != 1 {
		t.Fatalf("relayed %d", len(up))
	}
	m := dhcpOf(up[0].frame)
	sub, _ := parseOption82(m.Options.Get(dhcpv4.OptionRelayAgentInformation))
	if string(sub[subCircuitID]) != "acc0:5" {
		t.Fatalf("circuit-id %q", sub[subCircuitID])
	}
	rep := kea(t, time.Minute)(m)
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, rep.ToBytes()))
	for _, s := range r.snd.take() {
		if s.port != accPort {
			continue
		}
		var p classifier.Packet
		p.Decode(s.frame)
		if v := p.VLAN & 0xfff; v != 5 {
			t.Errorf("OFFER for circuit-id acc0:5 (the device's DISCOVER on acc1) delivered on VLAN %d", v)
		}
	}
}

// An ISP's NAK of a RENEWING client's REQUEST goes to the client's ciaddr,
// as ispmux's own NAK does (nakAddr): the NAK's own ciaddr is 0, and a
// client that listens on its leased address only (dhcpcd 9.4) ignored the
// broadcast, renewing unanswered until T2. A NAK of an INIT-REBOOT
// REQUEST (ciaddr 0) is still broadcast.
// An ISP's ACK to a renewal that ispmux refuses (no lease time; the
// registration changed while the ISP answered) is answered with ispmux's
// own NAK (nakAck), which went to the ACK's ciaddr: 0 from a server that
// does not echo it (RFC 2131 table 3 allows either), so the NAK was
// broadcast, and a RENEWING client that hears its leased address only
// (dhcpcd 9.4, nakAddr) renewed unanswered until T2. It goes to the
// REQUEST's ciaddr now, with the client's flags.
func TestRefusedAckToRenewingClientAtCiaddr(t *testing.T) {
	ip := netip.MustParseAddr("100.64.0.101")
	for _, tc := range []struct {
		name   string
		refuse func(r *prig, ack *dhcpv4.DHCPv4)
	}{
		{"no lease time", func(_ *prig, ack *dhcpv4.DHCPv4) { ack.Options.Del(dhcpv4.OptionIPAddressLeaseTime) }},
		{"not admitted", func(r *prig, _ *dhcpv4.DHCPv4) { block(t, r, s1) }},
	} {
		r, _ := twoServersBound(t)
		req := renewing(t, s1, ip.String())
		req.Flags = 0x8000 // the client's, which its NAK carries
		r.fromClientUnicast(req, ip)
		up, _ := r.relayedTo()
		if up[ispSID] == nil {
			t.Fatalf("%s: renewal not relayed to %v (relayed to %v; counters %v)", tc.name, ispSID, up, r.p.Counters())
		}
		ack := serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID)
		ack.ClientIPAddr, ack.Flags = net.IPv4zero, 0 // as a server may
		tc.refuse(r, ack)
		r.fromServerAt(ispSID, ack)
		var naks []string // destination and flags of each
		for _, n := range r.naksSent() {
			naks = append(naks, fmt.Sprintf("to %v flags %#04x", n.dst, n.m.Flags))
		}
		if want := fmt.Sprintf("to %v flags %#04x", ip, 0x8000); len(naks) != 1 || naks[0] != want {
			t.Errorf("%s: NAKs %q, want one %q (counters %v)", tc.name, naks, want, r.p.Counters())
		}
	}
}

func TestISPNakToRenewingClientAtCiaddr(t *testing.T) {
	ip := netip.MustParseAddr("100.64.0.101")
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	for _, tc := range []struct {
		name string
		send func(r *prig)
		want netip.Addr
	}{
		{"renewing", func(r *prig) { r.fromClientUnicast(renewing(t, s1, ip.String()), ip) }, ip},
		{"init-reboot", func(r *prig) { r.fromClient(initReboot(t, s1, ip)) }, bcast},
	} {
		r, _ := twoServersBound(t)
		tc.send(r)
		up, _ := r.relayedTo()
		req := up[ispSID]
		if req == nil {
			t.Fatalf("%s: REQUEST not relayed to %v (relayed to %v; counters %v)", tc.name, ispSID, up, r.p.Counters())
		}
		r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeNak, ispSID, ispSID))
		naks := r.nakDsts()
		if len(naks) != 1 || naks[0] != tc.want {
			t.Errorf("%s: the ISP's NAK went to %v, want once to %v (counters %v)", tc.name, naks, tc.want, r.p.Counters())
		}
	}
}
