package dhcpproxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// fromServer handles an ISP server's message: relayed to our giaddr, or
// (direct) sent straight to a subscriber's address, as a server answers an
// INFORM (RFC 2131 §4.3.5); only that is accepted directly, and its Option
// 82, if echoed, must be ours.
func (p *Proxy) fromServer(isp *ISP, pkt *classifier.Packet, payload []byte, direct bool) {
	src := addr4(pkt.SrcIP)
	known := false
	for _, s := range isp.Servers {
		known = known || s == src
	}
	if !known {
		p.count("unknown_server")
		// Its timeout, if it is an answer to one of ours, says so: the
		// ISP did answer, from an address not configured.
		if len(payload) >= 34 && payload[0] == 2 && payload[2] == 6 {
			p.tx.noteUnlisted(isp.Index, [4]byte(payload[4:8]), binding.MAC48([6]byte(payload[28:34])), src)
		}
		return
	}
	raw := payload
	m, payload, err := parseMessage(payload)
	if err != nil || len(m.ClientHWAddr) != 6 || badOverload(m) {
		p.count(errServerMalformed.Error())
		// Its timeout, if it answers one of ours, says so: the ISP
		// answered, with a message ispmux cannot use.
		if len(raw) >= 34 && raw[0] == 2 && raw[2] == 6 {
			p.tx.noteMalformed(isp.Index, [4]byte(raw[4:8]), binding.MAC48([6]byte(raw[28:34])), src)
		}
		return
	}
	withOverloaded(m, payload)
	mac := binding.MAC48([6]byte(m.ClientHWAddr))
	pk := pendKey{m.TransactionID, mac, isp.Index}
	t := p.tx.get(pk)
	if t == nil {
		if direct || m.MessageType() != dhcpv4.MessageTypeAck || !p.releaseRapid(isp, pk, src, m) {
			p.count("no_transaction")
		}
		return
	}
	if direct {
		if t.msgType != dhcpv4.MessageTypeInform || m.MessageType() != dhcpv4.MessageTypeAck {
			p.count("server_direct_unexpected")
			return
		}
		if got := m.Options.Get(dhcpv4.OptionRelayAgentInformation); got != nil && !bytes.Equal(got, t.op82) {
			p.count(errOption82.Error())
			return
		}
		if m.OpCode != dhcpv4.OpcodeBootReply || badOverload(m) {
			p.count(errServerMalformed.Error())
			return
		}
	} else if err := checkServer(m, t.op82); err != nil {
		p.count(err.Error())
		subj := regSubject(mac, t.circuit, t.reg)
		subj.isp = isp.Name
		switch err {
		case errVSSUnsupported:
			// An answer too: no timeout event blaming silence.
			p.tx.refuse(t)
			p.refuse(subscribers.EventRejected, subj, netip.Addr{}, "ISP server "+src.String()+
				" does not support VSS (RFC 6607: it echoed VSS-Control); its answer is not used")
		case errOption82:
			// An answer, not silence: its timeout would blame the ISP
			// for not answering.
			p.tx.refuse(t)
			p.refuse(subscribers.EventRejected, subj, netip.Addr{}, "ISP server "+src.String()+
				" answered without ispmux's Option 82 echoed unchanged (RFC 3046 §2.2); its answer is not used")
		}
		return
	}
	c := t.circuit
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
		p.answered(isp, t)
	}
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("dhcp from ISP", "mac", binding.MACString(mac), "type", m.MessageType().String(), "xid", m.TransactionID.String(),
			"isp", isp.Name, "server", src, "yiaddr", m.YourIPAddr)
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		// The subscriber sees one server (us): of several ISP servers
		// answering one DISCOVER, the first one's OFFER is delivered
		// and its server-id goes into the REQUEST, so the others see
		// they were not chosen (RFC 2131 §4.3.2) and only one ACKs.
		// Servers are told apart by source address (with server-id
		// override, RFC 5107, they all name ours), and an OFFER
		// arriving once the client has sent its REQUEST is late.
		sid, _ := netip.AddrFromSlice(m.ServerIdentifier().To4())
		if !sid.IsValid() {
			p.count("offer_without_server_id")
			return
		}
		if m.IPAddressLeaseTime(0) <= 0 {
			// No lease time (or 0): nothing to give the client (51 is
			// a MUST in an OFFER, RFC 2131 Table 3), and its ACK would
			// bind nothing. Another server's OFFER may still come.
			p.count("offer_without_lease_time")
			p.refuseAnswer(t, isp, m, "ISP server "+src.String()+" offered no lease time (option 51 missing or 0)")
			return
		}
		if why := p.stale(mac, c.Name, isp.Name); why != "" {
			// The registration changed while the ISP was answering
			// (a move to another ISP, say), as for an ACK
			// (ack_registration_changed): the client's next DISCOVER
			// goes where it is registered now. Delivered, the old
			// ISP's OFFER had the client ask the new ISP for the old
			// one's address, unanswered (a switching trial: 22 s
			// without service, a timeout event blaming the new ISP).
			// Answered: its end is no silence of this ISP (no
			// timeout event).
			p.count("offer_registration_changed")
			p.tx.refuse(t)
			return
		}
		if why := p.unusable(c, isp, addrOf(m.YourIPAddr)); why != "" {
			// An address no subscriber may hold: the client's REQUEST
			// for it would be refused at the ACK (ack_unusable_address),
			// and the client would go round DISCOVER, OFFER, NAK; with
			// several servers it would shut out a good one's OFFER (a
			// trial). Another server's OFFER may still come.
			p.count("offer_unusable_address")
			p.refuseAnswer(t, isp, m, "ISP server "+src.String()+" offered an unusable address ("+why+")")
			return
		}
		switch p.tx.offer(t, isp, src, sid, time.Now(), p.lim.Load().Timeout) {
		case offerOtherServer:
			p.count("offer_other_server")
			return
		case offerRepeated:
			p.count("offer_repeated")
			return
		}
		out := p.fitOrRefuse(t, isp, src, m, payload, p.clientLease(m.IPAddressLeaseTime(0)))
		if out == nil {
			return
		}
		p.deliver(c, m, out)
		p.count("offer")
		p.ispStat(isp.Index).outcomes[OutcomeOffer].Add(1)
	case dhcpv4.MessageTypeAck:
		// Without option 80 it is no rapid-commit ACK (RFC 4039): to a
		// DISCOVER that took over a REQUEST's transaction, it is the
		// ACK of that REQUEST. The client, SELECTING, takes no ACK, so
		// nothing is bound, and the DISCOVER's OFFER is still awaited.
		// The ISP's lease is left: the DISCOVER is at its servers,
		// which offer a client its current lease first (RFC 2131
		// §4.3.1), for the client's next REQUEST; a RELEASE now would
		// free the address they offer.
		if !m.Options.Has(dhcpv4.OptionRapidCommit) {
			if _, ok := p.tx.overtakenAnswer(t); ok {
				p.count("ack_after_discover")
				p.log.Debug("dhcp: ACK of a REQUEST the client gave up (it went back to DISCOVER) not bound", "mac", binding.MACString(mac),
					"isp", isp.Name, "server", src, "yiaddr", m.YourIPAddr)
				return
			}
		}
		if t.msgType == dhcpv4.MessageTypeDiscover && (!t.rapid || !m.Options.Has(dhcpv4.OptionRapidCommit)) {
			// An ACK to a DISCOVER that did not ask for rapid commit
			// (a server MUST NOT send it, RFC 4039 §4), or without
			// option 80: the client, SELECTING, takes no ACK, so
			// nothing is bound (a review found it bound and
			// forwarded for, a lease the client never took), and
			// the lease the server committed is released. The
			// DISCOVER's OFFER is still awaited.
			p.count("ack_to_discover_unasked")
			p.releaseUnused(isp, pk, t, t.sub, t.op82, t.clientID, p.tx.requestedOf(t), src, m,
				"an ACK to a DISCOVER that did not ask for rapid commit (RFC 4039 §4): the client takes none")
			// An answer, refused: its end is no timeout "no answer
			// from the ISP" (a review), as an unusable OFFER's.
			why := " answered a DISCOVER without rapid commit with an ACK (RFC 4039 §4): not bound, its lease released"
			if t.rapid {
				why = " answered a rapid-commit DISCOVER with an ACK without option 80 (RFC 4039 §4): not bound, its lease released"
			}
			p.refuseAnswer(t, isp, m, "ISP server "+src.String()+why)
			return
		}
		if !p.tx.selected(t, src, addrOf(m.ServerIdentifier()), isp.ServerIDOverride) {
			// A SELECTING REQUEST names one server; another one's
			// ACK is not the client's lease (that server should have
			// taken the REQUEST as the decline of its OFFER). The
			// selected server's ACK is still awaited.
			p.count("ack_other_server")
			p.log.Debug("dhcp: ACK from an ISP server the client did not select ignored", "mac", binding.MACString(mac),
				"isp", isp.Name, "server", src, "yiaddr", m.YourIPAddr)
			if m.Options.Has(dhcpv4.OptionRapidCommit) {
				// Its rapid-commit ACK to the DISCOVER (RFC 4039),
				// after the client took another server's OFFER: a
				// lease committed that the client will not use.
				p.releaseUnused(isp, pk, t, t.sub, t.op82, t.clientID, p.tx.requestedOf(t), src, m, rapidNotTaken)
			}
			return
		}
		p.tx.takeAck(pk, t, src, addrOf(m.YourIPAddr), time.Now().Add(p.lim.Load().Timeout))
		if t.msgType == dhcpv4.MessageTypeInform {
			// To the address the INFORM came from (RFC 2131
			// §4.3.5), whatever ciaddr and yiaddr the ISP's ACK
			// carries (table 3 lets its ciaddr be 0).
			out := p.fitOrRefuse(t, isp, src, m, payload, 0)
			if out == nil {
				return
			}
			dst := p.tx.informFrom(t)
			if !dst.IsValid() {
				dst = replyAddr(m, out) // the client's broadcast bit
			}
			p.deliverTo(c, m, out, dst)
			p.count("ack_inform")
			return
		}
		// The ACK goes out after the commit, from another goroutine:
		// build it now, while payload (the punt buffer) is ours.
		ack := p.fitOrRefuse(t, isp, src, m, payload, p.clientLease(m.IPAddressLeaseTime(0)))
		if ack == nil {
			// Not bound: the client would never see the ACK, and the
			// lease the ISP committed for it is released.
			p.releaseTooBig(isp, t, src, m)
			return
		}
		opts, boot := ackOptions(payload), bootFields(payload)
		p.committing.Add(1)
		go func() {
			defer p.committing.Done()
			p.bindAndAck(t, m, ack, opts, boot, src)
		}()
	case dhcpv4.MessageTypeNak:
		if o, ok := p.tx.overtakenNak(t, src, addrOf(m.ServerIdentifier()), isp.ServerIDOverride); ok {
			// The NAK of the REQUEST the client's DISCOVER under
			// this xid took over: recorded as any NAK (a SELECTING
			// one's a handover refused), but not sent (the client,
			// SELECTING, takes none) and not the DISCOVER's; its
			// OFFER is still awaited.
			p.count("nak_after_discover")
			if p.endByNak(t, m, o.requested) {
				p.ispStat(t.isp.Index).outcomes[OutcomeNak].Add(1)
				if o.selecting {
					p.handoverFailed(regSubject(t.sub.mac, t.circuit, t.reg), HandoverRefused, p.now())
				}
			}
			return
		}
		if t.msgType != dhcpv4.MessageTypeRequest {
			// A NAK answers a REQUEST only (RFC 2131 table 2): one to
			// a DISCOVER or an INFORM ends no lease, nor the
			// transaction (another server's answer may follow).
			p.count("nak_not_request")
			if t.msgType == dhcpv4.MessageTypeDiscover {
				// Not silence: if no OFFER follows, its end reports
				// the NAK (an INFORM's end reports nothing anyway).
				p.tx.nak(t, src)
			}
			return
		}
		if p.tx.earlyOf(t) && p.otherServerBeforeT2(t, src) {
			// A renewal sent to every server before the ISP's T2:
			// the client is still RENEWING, which only the lease's
			// server answers; another's NAK (a split scope's server,
			// which has no record of the lease) ends nothing. The
			// lease's server's answer is awaited (its silence: the
			// renewal answered from the binding, answerAfterSilence;
			// the timeout event names this NAK).
			p.count("nak_other_server_before_t2")
			p.tx.noteOtherNak(t, src)
			p.log.Debug("dhcp: NAK of a renewal from a server that did not grant the lease, before the ISP's T2, ignored", "mac", binding.MACString(mac),
				"isp", isp.Name, "server", src)
			return
		}
		p.tx.take(pk, t)
		p.nakFromISP(t, m, payload)
	default:
		p.count("server_unexpected_type")
	}
}

// otherServerBeforeT2 reports whether src, whose NAK answers t's renewal,
// is not the server that granted the subscriber's lease (neither the
// lease's server identifier nor the address its ACK came from), and the
// ISP's T2 has not come yet: then the NAK is not acted on.
func (p *Proxy) otherServerBeforeT2(t *txn, src netip.Addr) bool {
	l, ok := p.leases.get(t.sub)
	if !ok || l.isp != t.isp.Index || l.pastRebind(p.now()) {
		return false
	}
	sid, relay := l.sid(), l.relayAddr()
	if !slices.Contains(t.isp.Servers, sid) && !slices.Contains(t.isp.Servers, relay) {
		// The lease's server is not known as one of the ISP's (a binding
		// of an older ispmux, server-id override): any NAK may be its.
		return false
	}
	return src != sid && src != relay
}

// fitOrRefuse returns the reply m of ISP server src to t (payload) as
// relayDown passes it on to t's client, with a client lease of lease (0:
// none), made to fit what the client takes (fitted); nil when even its
// essential options do not fit, the reply refused (refuseTooBig).
func (p *Proxy) fitOrRefuse(t *txn, isp *ISP, src netip.Addr, m *dhcpv4.DHCPv4, payload []byte, lease time.Duration) []byte {
	out := p.fitted(t, relayDownTo(payload, t.circuit.Addr, lease, p.tx.clientSideOf(t)))
	if out == nil {
		p.refuseTooBig(t, isp, src, m, len(payload))
	}
	return out
}

// releaseRapid handles the ACK of server src to a rapid-commit DISCOVER
// (RFC 4039) under pk whose transaction another server's ACK already
// took, and reports whether it did (false: no such DISCOVER, or src is
// the server taken): src's lease is released (releaseUnused).
func (p *Proxy) releaseRapid(isp *ISP, pk pendKey, src netip.Addr, m *dhcpv4.DHCPv4) bool {
	w, ok := p.tx.rapidWon(pk)
	if !ok || src == w.from {
		return false
	}
	if err := checkServer(m, w.op82); err != nil {
		p.count(err.Error())
		return true
	}
	p.releaseUnused(isp, pk, nil, w.sub, w.op82, w.clientID, w.ip, src, m, rapidNotTaken)
	return true
}

// releaseUnused releases the lease server src committed with its
// rapid-commit ACK m (RFC 4039) to the DISCOVER under pk of subscriber
// sub, which the client will not use (it took another server's ACK or
// OFFER; t is the transaction still pending, nil once taken): held until
// it expires otherwise (RFC 3315 §22.14, which RFC 4039 follows: "some
// servers will commit addresses that are not actually used by the
// client"). ispmux, the client's side of the exchange, releases it to
// src, once, as the client would: ciaddr the address src committed, its
// server identifier, the exchange's client identifier and Option 82
// (op82), our giaddr. Not when src ACKed keep (the address the client
// took or asks for) or an address a binding ispmux installed holds at isp
// (installedAt): servers sharing one lease database ACK the same address,
// and that RELEASE would free the subscriber's own (a binding ispmux still
// forwards for, if the address the client took is refused: a phantom the
// ISP could give to another), or another subscriber's (a server that gave
// it twice), as for the ACKs refused (releaseRefused) or too big
// (releaseTooBig); nor, later, once such a binding holds it (the intent,
// releaseUnbound, is checked again when sent).
//
// why is the RELEASE intent's reason: rapidNotTaken, or that the client
// had not asked for rapid commit.
func (p *Proxy) releaseUnused(isp *ISP, pk pendKey, t *txn, sub subKey, op82, clientID []byte, keep, src netip.Addr, m *dhcpv4.DHCPv4, why string) {
	ip := addrOf(m.YourIPAddr)
	if !ip.IsValid() || ip.IsUnspecified() || ip == keep || p.installedAt(sub, isp, ip) || !p.tx.releaseOnce(pk, t, src) {
		p.count("rapid_commit_extra_ack")
		return
	}
	c := p.circuits[sub.circuit]
	if t != nil {
		c = t.circuit
	}
	if !p.releaseUnbound(isp, c, src, sub, op82, clientID, m, why) {
		p.count("rapid_commit_not_released")
		return
	}
	p.count("rapid_commit_released")
	p.log.Info("dhcp: an ISP server's rapid-commit lease the client does not use released",
		"mac", binding.MACString(sub.mac), "isp", isp.Name, "server", src, "ip", ip, "kept", keep, "why", why)
}

// rapidNotTaken is releaseUnused's reason for a rapid-commit lease the
// client did not take.
const rapidNotTaken = "rapid commit: the client took another server's answer (RFC 4039)"

// releaseTooBig releases the lease server src committed with its ACK m to
// t (a REQUEST, or a rapid-commit DISCOVER), refused as too big for the
// client (refuseTooBig): the client never sees it, and the ISP would hold
// the address for nobody until its lease ran out. Not an address a
// binding ispmux installed holds at isp (installedAt): the subscriber's
// own (a renewal's ACK: the binding stands, its client answered from it),
// which that RELEASE would free, or another's. The client is
// not NAKed: a NAK (300 bytes at least, its client identifier echoed) is
// only a few bytes shorter than the ACK's essential options, and a new
// DISCOVER would meet the same limit.
func (p *Proxy) releaseTooBig(isp *ISP, t *txn, src netip.Addr, m *dhcpv4.DHCPv4) {
	ip := addrOf(m.YourIPAddr)
	if !ip.IsValid() || ip.IsUnspecified() {
		return
	}
	p.releaseRefused(t, isp, m, ip, src, "reply_too_big", "the ACK does not fit what the client takes; not delivered")
}

// releaseUnbound releases to server src of isp the lease its ACK m
// committed to subscriber sub on circuit c, which ispmux did not bind
// (why), through an intent (intents.go: stored alone, nothing was bound;
// sent; completed by a later tick; sent again at the next tick while the
// ISP's next hop is unresolved, and at the next start after a crash): a
// DHCPRELEASE as the client would release it: ciaddr m's yiaddr, m's
// server identifier (else src), the exchange's client identifier and
// Option 82 (op82), our giaddr (revokeMessage). It reports whether the
// RELEASE is on its way: recorded (sent now or later), or, when it cannot
// be (the store refused it, c is nil), sent once now. The store write is
// on the frame's path: these are rare (an ACK refused, a rapid-commit ACK
// lost), and the RELEASE must be queued before the subscriber's next
// message is relayed (flushIntentsOf).
func (p *Proxy) releaseUnbound(isp *ISP, c *Circuit, src netip.Addr, sub subKey, op82, clientID []byte, m *dhcpv4.DHCPv4, why string) bool {
	sid := addrOf(m.ServerIdentifier())
	if !sid.IsValid() {
		sid = src
	}
	b := subscribers.Binding{MAC: binding.MACBytes(sub.mac), IP: addrOf(m.YourIPAddr), ServerID: sid, ClientID: clientID, Option82: op82}
	msg := p.revokeMessage(b, isp, nil, why)
	if msg == nil {
		return false
	}
	if c != nil {
		it, err := p.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentReleaseUnbound, ISP: isp.Name,
			MAC: b.MAC, Access: c.Name, VLAN: c.VLAN, IP: b.IP, Message: msg})
		if err == nil {
			failpoint.Hit(failpoint.EndAfterIntent)
			p.intents.add(it, false)
			p.sendIntent(pendingIntent{it, false})
			return true
		}
		p.storeError("dhcp: RELEASE of an ACK not bound not recorded; sent once, not replayed after a crash",
			"mac", binding.MACString(sub.mac), "isp", isp.Name, "ip", b.IP, "err", err)
	}
	gw, ok := p.nextHop(isp)
	return ok && p.injectUDP(isp.Port, gw, isp.MAC, isp.VLAN, isp.Addr, src, 67, 67, msg)
}

// holds reports whether subscriber sk's binding is of ip at isp.
func (p *Proxy) holds(sk subKey, isp *ISP, ip netip.Addr) bool {
	l, ok := p.leases.get(sk)
	return ok && l.isp == isp.Index && l.addr() == ip
}

// installedAt reports whether a binding ispmux installed holds ip at isp:
// subscriber sk's own, or another subscriber's. A RELEASE of ip naming
// sk's client, for an ACK sk does not take, must not go then: it would
// free sk's binding, or the other's lease at a server keying leases by
// client identifier.
func (p *Proxy) installedAt(sk subKey, isp *ISP, ip netip.Addr) bool {
	if p.holds(sk, isp, ip) {
		return true
	}
	_, held := p.tables.Holder(isp.Index, ip)
	return held
}

// ackOptions returns an ACK's options as raw TLVs (those the server put in
// the file and sname fields too, by option 52), Option 82, option 52 and
// padding left out, cut at an option boundary to what a binding keeps.
func ackOptions(raw []byte) []byte {
	var out []byte
	forEachOptionAll(raw, func(code byte, data []byte) {
		if code == optRelayAgentInfo || code == optOverload || len(out)+2+len(data) > maxStoredOptions {
			return
		}
		out = append(out, code, byte(len(data)))
		out = append(out, data...)
	})
	return out
}

// bootFields returns the siaddr, sname and file fields of the ACK raw
// (subscribers.BootLen bytes), those that carry options by option 52
// zeroed (ackOptions keeps their options), or nil when they are all zero.
func bootFields(raw []byte) []byte {
	if len(raw) < optionsStart {
		return nil
	}
	b := make([]byte, 0, subscribers.BootLen)
	b = append(b, raw[20:24]...)
	b = append(b, raw[snameStart:snameEnd]...)
	b = append(b, raw[fileStart:fileEnd]...)
	for _, f := range overloadedFields(raw) {
		clear(b[4+f.lo-snameStart : 4+f.hi-snameStart])
	}
	if !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		return nil
	}
	return b
}

// maxStoredOptions bounds the ACK options kept with a binding (the store's
// limit).
const maxStoredOptions = 1500

// deliver sends a server message to the subscriber as RFC 2131 §4.1 says
// for a server on the client's link (giaddr 0): NAKs are broadcast (an
// ISP's NAK goes where ispmux's own does, nakFromISP); a
// client with an address (ciaddr) gets unicast; a client that asked for
// broadcast gets broadcast; otherwise unicast to yiaddr at chaddr. Every
// frame is addressed to chaddr at L2 (deliverTo).
func (p *Proxy) deliver(c *Circuit, m *dhcpv4.DHCPv4, payload []byte) {
	p.deliverTo(c, m, payload, replyAddr(m, payload))
}

// replyAddr is the IP destination of the server message m, sent as
// payload, by RFC 2131 §4.1 (see deliver): the broadcast bit is the one
// payload carries, the client's (relayDownTo), not the one the ISP's
// server sent (a client that cannot take unicast set it).
func replyAddr(m *dhcpv4.DHCPv4, payload []byte) netip.Addr {
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	ciaddr, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
	yiaddr, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
	broadcast := m.IsBroadcast()
	if len(payload) > 10 {
		broadcast = payload[10]&0x80 != 0
	}
	switch {
	case m.MessageType() == dhcpv4.MessageTypeNak:
		return bcast
	case ciaddr.IsValid() && !ciaddr.IsUnspecified():
		return ciaddr
	case broadcast:
		return bcast
	case yiaddr.IsValid() && !yiaddr.IsUnspecified():
		return yiaddr
	}
	return bcast
}

// deliverTo sends the server message m (payload) to the subscriber at IP
// address dst, its frame to chaddr.
func (p *Proxy) deliverTo(c *Circuit, m *dhcpv4.DHCPv4, payload []byte, dst netip.Addr) {
	// The Ethernet destination is always the client's own MAC: where RFC
	// 2131 says broadcast, the IP destination is 255.255.255.255 (which
	// a client without an address accepts) but the frame goes to chaddr
	// only — a broadcast frame would show every subscriber on the access
	// network its neighbour's MAC, address and options.
	dstMAC := binding.MAC48([6]byte(m.ClientHWAddr))
	if !p.injectUDP(c.Port, dstMAC, c.MAC, c.VLAN, c.Addr, dst, 67, 68, payload) {
		p.count("inject_full")
	}
}
