package dhcpproxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// Refusing towards the subscriber: the NAKs ispmux sends as the server it
// emulates (its own, and an ISP's passed on: nakFromISP, endByNak), and
// the DECLINE of an acknowledged address it cannot use (declineAndNak).

// refuseTooBig refuses the reply m (size bytes) of ISP server src to t:
// its essential options alone do not fit what the client takes
// (fitReply), which would drop it unseen.
func (p *Proxy) refuseTooBig(t *txn, isp *ISP, src netip.Addr, m *dhcpv4.DHCPv4, size int) {
	p.refuseAnswer(t, isp, m, fmt.Sprintf(
		"ISP server %s's %s (%d bytes) does not fit the %d bytes the client takes (option 57, access MTU) even with its optional options left out; not sent",
		src, m.MessageType(), size, p.replyLimit(t.circuit, t.replyMax)))
}

// refuseAnswer refuses an ISP server's answer m to t, saying why in a
// rejected event at t's subscriber and isp: t ended in an answer, not
// the ISP's silence (no timeout event for it).
func (p *Proxy) refuseAnswer(t *txn, isp *ISP, m *dhcpv4.DHCPv4, why string) {
	p.tx.refuse(t)
	subj := regSubject(t.sub.mac, t.circuit, t.reg)
	subj.isp = isp.Name
	p.refuse(subscribers.EventRejected, subj, addrOf(m.YourIPAddr), why)
}

// nakFromISP passes the ISP's NAK on: the subscriber's binding (if any)
// ends with the nak event in one transaction, then the NAK is delivered.
func (p *Proxy) nakFromISP(t *txn, m *dhcpv4.DHCPv4, payload []byte) {
	c := t.circuit
	failpoint.Hit(failpoint.NakBeforeCommit)
	if !p.endByNak(t, m, p.tx.requestedOf(t)) {
		return
	}
	failpoint.Hit(failpoint.NakAfterCommit)
	p.handoverRefusedByNak(t, p.now()) // back to the garden, if a handover
	cs := p.tx.clientSideOf(t)
	out := p.fitted(t, relayDownTo(payload, c.Addr, 0, cs))
	if out == nil {
		out = nakBytes(m, c.Addr, "") // the ISP's, without its options
		copy(out[10:12], cs.flags[:]) // the client's, as relayDownTo's
	}
	// To the REQUEST's ciaddr, as ispmux's own NAK (nakAddr): the NAK's
	// own ciaddr is 0, and a RENEWING client may listen on its leased
	// address only.
	p.deliverTo(c, m, out, nakAddrOf(cs.ciaddr))
	p.count("nak")
	p.ispStat(t.isp.Index).outcomes[OutcomeNak].Add(1)
}

// endByNak ends the binding of t's subscriber (if any) with the nak event
// of the ISP's NAK m to its REQUEST for ip (what the ISP refused; invalid:
// the binding's address), in one transaction, and reports whether it did.
func (p *Proxy) endByNak(t *txn, m *dhcpv4.DHCPv4, ip netip.Addr) bool {
	requested := ip
	subj := regSubject(t.sub.mac, t.circuit, t.reg)
	subj.isp = t.isp.Name
	why := "the ISP refused (DHCPNAK)"
	l, bound := p.leases.get(t.sub)
	switch {
	case bound && !ip.IsValid():
		ip = l.addr()
	case bound && l.isp == t.isp.Index && ip != l.addr():
		// The event names the address whose binding ends, and the
		// one the client asked for instead.
		why += fmt.Sprintf(" %s, asked for in place of the bound %s", ip, l.addr())
		ip = l.addr()
	}
	if msg := m.Message(); msg != "" {
		why += ": " + msg
	}
	// A REQUEST with another client identifier than the binding's (a
	// client rebooted with a new one) is a new client to the ISP's
	// server, which NAKed it the address its old identifier holds: that
	// lease stands at the ISP, and is released with the binding's end,
	// as releaseReplaced releases it when the ISP ACKs another address
	// (a trial's INIT-REBOOT with a new client identifier left it there).
	//
	// So is a REQUEST for another address than the binding's, the same
	// client's: it has left its bound address (a SELECTING REQUEST after
	// a DISCOVER, an INIT-REBOOT with an address of elsewhere), which the
	// ISP's server still holds for it, and which ended here would stay
	// leased there, unused, until it expired.
	var in *subscribers.Intent
	if bound && l.isp == t.isp.Index {
		// A binding stored without a client identifier (before they
		// were kept) tells nothing of its client: no RELEASE for
		// another one (a chaddr-only one could free the lease at a
		// server keying by hardware address, the new one's). The same
		// client asking for another address is another matter: its
		// bound address is its own at the ISP under its hardware
		// address too, so the RELEASE, with or without an identifier,
		// frees what it left, and a server finding the address now
		// someone else's ignores it.
		b := p.full(held{t.sub, l})
		switch {
		case otherClientID(&b, t.clientID):
			in = p.releaseIntent(b, t.isp, t.circuit, "replaced: the client asked again with another client identifier")
		case requested.IsValid() && requested != l.addr():
			in = p.releaseIntent(b, t.isp, t.circuit, "replaced: the client asked for another address")
		}
	}
	if !p.endBindingKeepTx(t.sub, t.circuit.Name, in, subj.event(subscribers.EventNak, ip, why)) {
		return false
	}
	if in != nil {
		p.count("replaced_released")
	}
	return true
}

// declineAndNak refuses an ACKed address on the subscriber's behalf: a
// DHCPDECLINE for ip to the ISP's servers (relayed as ours, with the
// transaction's Option 82 and the client's identifier, so the server
// matches its lease) through an intent, durable before the DECLINE and the
// DHCPNAK to the subscriber are sent: a crash after the NAK, or a send that
// fails, leaves the intent pending, and the DECLINE is sent again at the
// next tick or start instead of the ISP keeping the lease in conflict
// until it expires.
func (p *Proxy) declineAndNak(t *txn, ack *dhcpv4.DHCPv4, ip, ispServerID netip.Addr) {
	p.decline(t, ack, ip, ispServerID)
	p.nakAck(t, ack, "address in use")
}

// nakAck NAKs the subscriber of t instead of passing the ISP's ack on:
// the NAK echoes the client identifier the client sent (RFC 6842 §3),
// which the ISP's ACK may not carry (a server that predates RFC 6842),
// carries the client's flags and goes where ispmux's NAK to the client's
// REQUEST would (nakAddrOf its ciaddr): the ACK's ciaddr may be 0 (RFC
// 2131 table 3, "ciaddr from DHCPREQUEST or 0"), which broadcast the NAK
// of a renewal refused (a registration changed meanwhile) to a RENEWING
// client that hears its leased address only (dhcpcd 9.4, nakAddr).
func (p *Proxy) nakAck(t *txn, ack *dhcpv4.DHCPv4, msg string) {
	cs := p.tx.clientSideOf(t)
	m := *ack
	m.Options = dhcpv4.Options{}
	m.Flags = binary.BigEndian.Uint16(cs.flags[:])
	if len(cs.clientID) > 0 {
		m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, cs.clientID))
	}
	p.nakTo(t.circuit, &m, msg, nakAddrOf(cs.ciaddr))
}

// decline sends the ISP a DHCPDECLINE of ip for the subscriber of t,
// through an intent (intents.go): stored, sent, completed by a later tick.
// If the store refuses the intent the DECLINE is still sent, once.
func (p *Proxy) decline(t *txn, ack *dhcpv4.DHCPv4, ip, ispServerID netip.Addr) {
	msg := p.declineMessage(t, ack, ip, ispServerID)
	if msg == nil {
		return
	}
	isp := t.isp
	p.count("declined_for_subscriber")
	it, err := p.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentDecline, ISP: isp.Name,
		MAC: binding.MACBytes(t.sub.mac), Access: t.circuit.Name, VLAN: t.circuit.VLAN, IP: ip, Message: msg})
	if err != nil {
		p.storeError("dhcp: DECLINE of an address in conflict not recorded; sent once, not replayed after a crash",
			"mac", binding.MACString(t.sub.mac), "ip", ip, "err", err)
		if gw, ok := p.nextHop(isp); ok {
			for _, srv := range isp.Servers {
				p.injectUDP(isp.Port, gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, msg)
			}
		}
		return
	}
	failpoint.Hit(failpoint.EndAfterIntent)
	p.intents.add(it, false)
	p.sendIntent(pendingIntent{it, false})
}

// declineMessage builds the DHCPDECLINE of ip that decline sends (nil if
// it cannot be built).
func (p *Proxy) declineMessage(t *txn, ack *dhcpv4.DHCPv4, ip, ispServerID netip.Addr) []byte {
	isp := t.isp
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithTransactionID(ack.TransactionID),
		dhcpv4.WithHwAddr(ack.ClientHWAddr),
		dhcpv4.WithGatewayIP(net.IP(isp.Addr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispServerID.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptMessage("address in use behind the relay agent")),
	}
	if len(t.clientID) > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, t.clientID))
	}
	mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, t.op82))
	dec, err := dhcpv4.New(mods...)
	if err != nil {
		return nil
	}
	dec.HopCount = 1
	return dec.ToBytes()
}

// nak sends the subscriber a DHCPNAK for the transaction of ack, as its
// server: to the client's ciaddr when m has one (a RENEWING or REBINDING
// client, which holds that address; nakAddr), else to 255.255.255.255.
func (p *Proxy) nak(c *Circuit, m *dhcpv4.DHCPv4, msg string) {
	p.nakTo(c, m, msg, nakAddr(m))
}

// nakTo is nak with the IP destination dst (nakAddrOf).
func (p *Proxy) nakTo(c *Circuit, m *dhcpv4.DHCPv4, msg string, dst netip.Addr) {
	// Built in place (no library message, no random transaction ID
	// drawn): a flood of REQUESTs the NAK rule refuses costs little.
	dstMAC := binding.MAC48([6]byte(m.ClientHWAddr))
	if !p.injectUDP(c.Port, dstMAC, c.MAC, c.VLAN, c.Addr, dst, 67, 68, nakBytes(m, c.Addr, msg)) {
		p.count("inject_full")
	}
	p.count("nak_sent")
}

// nakAddr is the IP destination of ispmux's NAK to the client message m:
// its ciaddr if it has one, else 255.255.255.255. RFC 2131 §4.1 has a
// server on the client's link broadcast every NAK, but a RENEWING client
// may listen only on its leased address: dhcpcd 9.4 (Debian 12) reads a
// renewal's answers on a UDP socket bound to it and never saw ispmux's
// broadcast NAKs, renewing unanswered until T2 (a lab trial: three NAKs
// ignored, 22 s of a 60 s lease without service; 3.75 min with the
// default 10 min client lease), where Kea, which answers any message
// with a ciaddr at that ciaddr (Dhcpv4Srv::adjustRemoteAddr), reached it
// at once. A client without an address (INIT-REBOOT, ciaddr 0), or with
// one no host holds (unicastHost: "this network" 0/8, loopback,
// link-local, multicast, the reserved 240/4, broadcast), still gets the
// broadcast. The frame goes to chaddr either way (deliverTo).
func nakAddr(m *dhcpv4.DHCPv4) netip.Addr {
	ci, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
	return nakAddrOf(ci)
}

// nakAddrOf is nakAddr for a client message whose ciaddr was ci (invalid:
// none): an ISP's NAK, whose own ciaddr is 0, goes where ispmux's own
// would (nakFromISP).
func nakAddrOf(ci netip.Addr) netip.Addr {
	if unicastHost(ci) {
		return ci
	}
	return netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// unicastHost reports whether a is an IPv4 address a host on the link
// can hold, and so a datagram's destination: not in 0.0.0.0/8 ("this
// network", RFC 1122 §3.2.1.3: a source only), 127/8 (loopback), 169.254/16
// (link-local, which no ISP leases), 224/4 (multicast) or 240/4
// (reserved, 255.255.255.255 among them, RFC 1112 §4). netip's
// IsGlobalUnicast lets 0.0.0.0/8 (but 0.0.0.0) and 240/4 (but the
// broadcast) through: a REQUEST's ciaddr of 0.1.2.3 or 240.0.0.1 had the
// NAK sent to it, where no client listens, not broadcast (a review).
func unicastHost(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[0] != 0 && b[0] < 224 && a.IsGlobalUnicast()
}

// nakBytes is ispmux's DHCPNAK to the client message m (RFC 2131 table 3:
// xid, flags, giaddr 0 and chaddr of the request; ciaddr, yiaddr, siaddr 0;
// options 53, 54 = sid, 56 = msg cut at 255 bytes, 61 echoed, RFC 6842).
func nakBytes(m *dhcpv4.DHCPv4, sid netip.Addr, msg string) []byte {
	out := make([]byte, optionsStart, bootpMinLen+len(msg))
	out[0], out[1], out[2] = byte(dhcpv4.OpcodeBootReply), 1, 6
	copy(out[4:8], m.TransactionID[:])
	binary.BigEndian.PutUint16(out[10:12], m.Flags)
	copy(out[28:44], m.ClientHWAddr)
	copy(out[236:240], magicCookie[:])
	a := sid.As4()
	out = append(out, optMessageType, 1, byte(dhcpv4.MessageTypeNak), optServerID, 4, a[0], a[1], a[2], a[3])
	if len(msg) > 255 {
		msg = msg[:255]
	}
	if msg != "" {
		out = append(out, optMessage, byte(len(msg)))
		out = append(out, msg...)
	}
	// RFC 6842 §3: the client identifier the client sent, unaltered.
	if id := m.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 && len(id) <= 255 {
		out = append(out, optClientID, byte(len(id)))
		out = append(out, id...)
	}
	return finish(out)
}
