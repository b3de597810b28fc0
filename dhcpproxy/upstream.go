package dhcpproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/circuitid"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// fromClient checks and admits a subscriber's message, then relays it.
func (p *Proxy) fromClient(c *Circuit, pkt *classifier.Packet, payload []byte) {
	if !c.Addr.IsValid() {
		// No server identifier to answer with (configs requires an
		// address where DHCP subscribers attach; static ones may not).
		p.count("no_access_address")
		return
	}
	sk := subKey{circuitKey{c.Port, c.VLAN}, pkt.Src}
	m, payload, err := parseMessage(payload)
	if err == nil {
		err = checkClient(m, net.HardwareAddr(macBytes(pkt.Src)))
	} else {
		err = unparsed(payload)
	}
	if err != nil {
		p.count(err.Error())
		// Worth an event, not only a counter: what a subscriber
		// forging identities or posing as a relay sends, and what a
		// broken client sends, whose owner calls the operator, who
		// finds the device's refusals in its events (ctl subscriber
		// MAC); folded and budgeted as every refusal. Its ISP's when
		// the MAC is registered (the ISP's event stream shows its
		// customer's device doing it), but only for a MAC bound on
		// this circuit: a forger elsewhere with a neighbour's MAC
		// would otherwise put its refusals in the neighbour's ISP's
		// stream and spend that ISP's budget. Not the ISP's rejected
		// outcome: no exchange with it, and counted per message one
		// device's broken or forged DHCP would drive the ISP's refusal
		// ratio (IspmuxDHCPRefusals) on its own.
		subj := subject{mac: pkt.Src, access: c.Name}
		if reg, ok := p.reg.Lookup(pkt.Src); ok && p.hasLease(sk) {
			subj = regSubject(pkt.Src, c, reg)
		}
		p.note(subscribers.EventRejected, subj, netip.Addr{}, clientRefusal(err))
		return
	}
	now := p.now()
	// Admission before the rate limits: an unregistered or blocked MAC
	// never spends the circuit's shared budget (a flood of random MACs
	// would lock every subscriber of the circuit out) and gets no
	// per-MAC state (it would grow with every MAC a flood makes up).
	reg, ok := p.reg.Lookup(pkt.Src)
	switch {
	case !ok:
		if pl := p.ob.pools[sk.circuit]; pl != nil {
			// No device record, on a circuit with an onboarding
			// pool: ispmux is its DHCP server (onboarding.go).
			p.onboard(c, pl, m, pkt.Src, now)
			return
		}
		p.count("unknown_subscriber")
		why := "not registered (" + m.MessageType().String() + ")"
		if p.nakRevoked(c, m, sk, now) {
			why += ": NAKed, the address of its binding ispmux revoked"
		}
		p.refuse(subscribers.EventUnknown, subject{mac: pkt.Src, access: c.Name}, netip.Addr{}, why)
		return
	case reg.Blocked:
		p.count("blocked_subscriber")
		p.refuse(subscribers.EventBlocked, regSubject(pkt.Src, c, reg), netip.Addr{}, "blocked")
		return
	case reg.Access != "" && reg.Access != c.Name:
		// Before its suspension: a clone of the MAC elsewhere (or the
		// device moved) says nothing of its ISP (a trial saw its
		// refusals counted as the ISP's).
		p.count("wrong_circuit")
		p.refuseMisplaced(regSubject(pkt.Src, c, reg), "registered on access "+reg.Access+", seen on "+c.Name)
		return
	case reg.Suspended():
		if pl := p.ob.pools[sk.circuit]; pl != nil {
			// The customer's ISP suspended it, on a circuit with a
			// walled garden: served there like a device without a
			// record, so that its subscriber can choose another ISP
			// at the portal (an open-access network locks no one in
			// with the ISP that cut it off). Its ISP's service is
			// not: a REQUEST for its ISP lease is NAKed as the
			// garden's (onboardRequest). Lifted, or claimed at
			// another ISP, it is handed over as any claimed device
			// (onboardingHandover).
			// Within its own rate limit as any registered device: its
			// messages would otherwise spend the circuit's onboarding
			// sample, which new devices onboard through (a review).
			if p.rateLimited(c, sk, reg, pkt.Src, now) {
				return
			}
			// Its ISP binding, if the revocation of the suspension has
			// not ended it yet: ended first, or the garden's entry in
			// the tables would be undone by its end (a review).
			if l, ok := p.leases.get(sk); ok {
				h := held{sk, l}
				why := p.staleHeld(h)
				if why == "" {
					why = "customer suspended"
				}
				p.revokeHeld(h, why)
				if _, still := p.leases.get(sk); still {
					return // not ended (a store error, logged): asked again later
				}
			}
			p.count("suspended_onboarding")
			p.onboard(c, pl, m, pkt.Src, now)
			return
		}
		// The customer's ISP suspended it: silence to DISCOVER, a NAK
		// to REQUEST (a client holding a lease stops using it now).
		p.count("suspended_customer")
		p.refuse(subscribers.EventRejected, regSubject(pkt.Src, c, reg), netip.Addr{}, "suspended")
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			p.nak(c, m, "service suspended")
		}
		return
	}
	if mt := m.MessageType(); p.isStatic(pkt.Src) && mt != dhcpv4.MessageTypeInform {
		p.count("static_subscriber")
		if mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest {
			p.refuse(subscribers.EventRejected, regSubject(pkt.Src, c, reg), netip.Addr{}, "static subscriber: its address is configured, DHCP "+mt.String()+" not served")
		}
		return
	}
	if p.rateLimited(c, sk, reg, pkt.Src, now) {
		return
	}
	if p.onboardingHandover(c, m, sk, now) {
		// A registered MAC's REQUEST for an onboarding address (NAKed
		// here), or its RELEASE/DECLINE of its onboarding lease.
		return
	}
	if mt := m.MessageType(); (mt == dhcpv4.MessageTypeRelease || mt == dhcpv4.MessageTypeDecline) && namesOtherServer(c, m) {
		// For another server on the subscriber's link (a stray or
		// forged message): the server ispmux emulates names itself
		// (c.Addr) in every OFFER and ACK, and ignores it, as RFC 2131
		// §4.3.3, §4.3.4 servers do. It ends no binding.
		if mt == dhcpv4.MessageTypeDecline {
			p.count("decline_other_server")
		} else {
			p.count("release_other_server")
		}
		return
	}
	// Another subscriber's client identifier (clientids.go), before
	// anything of this subscriber's changes (serveRequest may end its
	// moved binding).
	if isp := p.isps[reg.ISP]; isp != nil {
		if mt := m.MessageType(); mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest {
			if !p.checkClientID(c, reg, isp, m.Options.Get(dhcpv4.OptionClientIdentifier), pkt.Src) {
				return
			}
		}
	}
	// The client-lease rules (renewals.go): renewals answered from the
	// binding, REQUESTs for anything but the binding at its current ISP
	// NAKed, a moved device's old binding ended.
	what := p.serveRequest(c, m, payload, sk, &reg, now)
	if what == handled {
		return
	}
	isp := p.isps[reg.ISP]
	if isp == nil || len(isp.Servers) == 0 {
		p.count("no_isp_server")
		why := "ISP has no DHCP server configured"
		if isp == nil {
			// Removed from the configuration (its devices are purged
			// with ctl purge-isp): a trial read the other reason.
			why = "ISP " + reg.ISP + " is not configured"
		}
		p.refuse(subscribers.EventRejected, regSubject(pkt.Src, c, reg), netip.Addr{}, why)
		return
	}
	// Unicast: to our MAC, not to an IP broadcast. A RENEWING client
	// unicasts to the server identifier it holds, which may not be our
	// address now (the access address renumbered, a lease from before
	// ispmux): still RENEWING (RFC 2131 §4.4.5), not REBINDING.
	unicast := pkt.Dst == c.MAC && pkt.DstIP != 0xffffffff
	p.relay(c, isp, reg, sk, payload, m, addr4(pkt.SrcIP), unicast, what == relayRenewal, now)
}

// relayInfo is the Option 82 ispmux sends isp for the subscriber mac of
// customer on c.
func (p *Proxy) relayInfo(c *Circuit, isp *ISP, mac uint64, customer string, unicast bool) relayInfo {
	ri := relayInfo{
		CircuitID:     []byte(circuitID(isp.CircuitID, c, mac)),
		RemoteID:      macBytes(mac),
		SubscriberID:  []byte(customer),
		Unicast:       unicast,
		VSS:           isp.VSS,
		LinkSelection: isp.LinkSelection,
	}
	if isp.ServerIDOverride {
		ri.ServerIDOverride = c.Addr
	}
	return ri
}

// relay sends m to every DHCP server of isp as an extended request; a
// RELEASE or DECLINE also ends the subscriber's binding (endByClient).
// src is the IP source of m's frame; renewal: m renews the subscriber's
// binding past the ISP's T1 (answered from the binding if the ISP stays
// silent).
func (p *Proxy) relay(c *Circuit, isp *ISP, reg registry.Entry, sk subKey, raw []byte, m *dhcpv4.DHCPv4, src netip.Addr, unicast, renewal bool, now time.Time) {
	mt := m.MessageType()
	subj := regSubject(sk.mac, c, reg)
	ri := p.relayInfo(c, isp, sk.mac, reg.CustomerID, unicast)
	op82 := ri.encode()
	if len(op82) > 255 {
		// configs bounds every part; a registration from elsewhere may
		// not be. Never split or cut our Option 82.
		p.count("option82_too_long")
		p.refuse(subscribers.EventRejected, subj, netip.Addr{},
			fmt.Sprintf("Option 82 would be %d bytes (max 255): customer ID or circuit ID too long", len(op82)))
		return
	}

	held, hasLease := p.leases.get(sk)
	ending := mt == dhcpv4.MessageTypeRelease || mt == dhcpv4.MessageTypeDecline
	if ending {
		// Only the holder's own address can be released or declined
		// (RFC 2131 §4.3.4): a message naming another one changes
		// nothing and goes nowhere.
		named := m.ClientIPAddr
		if mt == dhcpv4.MessageTypeDecline {
			named = m.RequestedIPAddress()
		}
		if a := addrOf(named); !hasLease || a != held.addr() || held.isp != isp.Index {
			// Not its own binding: relaying it would let a
			// subscriber release or quarantine (DECLINE) a
			// neighbour's lease at the ISP.
			if mt == dhcpv4.MessageTypeDecline {
				p.count("decline_not_own_address")
			} else {
				p.count("release_not_own_address")
			}
			return
		}
	}

	if mt == dhcpv4.MessageTypeInform {
		// An INFORM is about the sender's own address (ciaddr, RFC 2131
		// §4.4.3). One another subscriber holds at this ISP (bound or
		// static) is not relayed: the ISP's server would answer to that
		// address (a security trial's INFORM named a neighbour's;
		// ispmux took the answer as the sender's, but the ISP heard of
		// a client at the neighbour's address). An address nobody holds
		// (set by hand) is relayed, as RFC 2131 §4.3.5 has the server
		// answer without a lease.
		if b, ok := p.tables.Holder(isp.Index, addrOf(m.ClientIPAddr)); ok && (b.MAC != sk.mac || b.Port != c.Port || b.VLAN != c.VLAN) {
			p.count("inform_not_own_address")
			return
		}
	}

	leaseSID := netip.Addr{}
	if hasLease && held.isp == isp.Index {
		leaseSID = held.sid()
	}
	pk := pendKey{m.TransactionID, sk.mac, isp.Index}
	gen := p.leases.generation(sk)
	lim := p.lim.Load()
	t, ispServerID, err := p.tx.begin(pk, sk, c, isp, reg, op82, raw, m, leaseSID, gen, now, lim.Timeout, lim.MaxPending,
		oneShare(lim.MaxPending, len(p.isps)))
	if err != nil {
		p.count("pending_full")
		if renewal && hasLease && held.isp == isp.Index {
			// A renewal of a binding the ISP still leases: answered
			// from it, as when the ISP is silent (the table is full
			// with its subscribers' silences, most likely), not
			// dropped for the client's lease to run out.
			if p.answerFromBinding(p.renewNoteOf(sk, isp, held, raw, m, now), reg.CustomerID, now) {
				p.count("renewal_local_pending_full")
			}
		}
		return
	}
	if sid := addrOf(m.ServerIdentifier()); mt == dhcpv4.MessageTypeRequest && sid.IsValid() && sid != c.Addr {
		// A SELECTING REQUEST naming another server: the client chose
		// it (RFC 2131 §4.3.2), where ispmux is the only server it can
		// reach. The DISCOVER's transaction is forgotten, and nothing is
		// relayed: named the ISP's own server identifier (a subscriber
		// can learn it), the REQUEST would have the ISP commit a lease
		// ispmux never hears of (no transaction takes its ACK), and a
		// subscriber sending such REQUESTs with ever new client
		// identifiers could empty the ISP's pool. (Before stop 39 it
		// was relayed so that the ISP's servers would see they were not
		// chosen; a server keeps no offer it needs told of.)
		p.count("request_other_server")
		p.tx.abandon(pk, t)
		return
	}
	if t != nil && mt == dhcpv4.MessageTypeInform {
		p.tx.informed(t, informAddr(m, src))
	}
	var rn *renewNote
	if t != nil {
		if renewal && hasLease && held.isp == isp.Index {
			// Kept with the transaction: its own copy of the message.
			rn = p.renewNoteOf(sk, isp, held, append([]byte(nil), raw...), m, now)
		}
		p.tx.noteRenewal(t, rn)
	}
	payload := relayUp(raw, m, isp.Addr, c.Addr, ispServerID, &ri)
	if renewal && hasLease && held.isp == isp.Index && held.renewAt != 0 && now.UnixNano() > held.renewAt {
		// ispmux's own renewal of the ISP's lease began at the ISP's
		// T1; the subscriber's secs counts its short renewal with
		// ispmux only. secs is what the ISP's servers judge a client
		// unanswered by (RFC 2131 §2; Kea HA's max-ack-delay: a
		// standby takes over when it sees unanswered clients).
		if el := (now.UnixNano() - held.renewAt) / int64(time.Second); el > int64(m.NumSeconds) {
			el = min(el, 0xffff)
			payload[8], payload[9] = byte(el>>8), byte(el)
		}
	}
	if n, mtu := ipv4HeaderLen+udpHeaderLen+len(payload), p.uplinkMTU(isp); n > mtu {
		// The subscriber's message is legal; with our Option 82 it no
		// longer fits the uplink. Relaying it without Option 82 would
		// send the ISP a request it cannot validate, so it is refused
		// here, saying why (rather than a timeout blaming the ISP).
		p.count("relay_too_big")
		p.refuse(subscribers.EventRejected, subj, netip.Addr{},
			fmt.Sprintf("%s of %d bytes does not fit the uplink MTU (%d) with Option 82", mt, n, mtu))
		p.tx.abandon(pk, t)
		return
	}
	if ending {
		p.endByClient(sk, held, mt, payload)
		return
	}
	// Past the ISP's T2 the renewal is ispmux's REBINDING (the client,
	// answered by ispmux, stays RENEWING): it goes to every server, as a
	// client's would (RFC 2131 §4.4.5), so a lease whose server is gone
	// (its failover partner took over) is extended by another. So does
	// one whose timeout would end past T2: should the lease's server stay
	// silent, the client's next renewal (ispmux's answer from the binding
	// halves what is left) may come only past the ISP's expiry, and
	// ispmux would never have rebound (a Kea HA standby back in
	// hot-standby answers nothing).
	renewing := renewal && unicast && hasLease && held.isp == isp.Index
	// Sent to every server before the ISP's T2 (only because the
	// timeout would end past it): the client would still be RENEWING
	// with the lease's server alone, whose answer counts; another
	// server's NAK (one of a split scope, which has no record of the
	// lease) is not acted on (earlyOf).
	timeout := lim.Timeout // the transaction's (a reload meanwhile: not this one's)
	early := renewing && !held.pastRebind(now) && held.pastRebind(now.Add(timeout))
	renewing = renewing && !held.pastRebind(now.Add(timeout))
	var only netip.Addr
	if t != nil && isp.ServerIDOverride && mt == dhcpv4.MessageTypeRequest {
		// With server-id override every server's OFFER named ours, so
		// a REQUEST naming it cannot tell the others they were not
		// chosen (RFC 2131 §4.3.2): they would take it for theirs and
		// NAK an address they did not offer. It goes to the server
		// whose OFFER was taken only (all of them when none was).
		only = p.tx.chosen(t)
		if !only.IsValid() && renewing {
			// A renewal has had no OFFER: it goes to the server that
			// granted the lease (its address; the identifiers are all
			// ours), as below without override.
			only = held.relayAddr()
		}
	} else if renewing && leaseSID.IsValid() {
		// RENEWING (unicast to us, its server): the client's REQUEST
		// goes to the server that granted the lease only (RFC 2131
		// §4.4.5); another server, which has no such lease, would NAK
		// it. REBINDING (broadcast) goes to every server.
		only = leaseSID
		if !slices.Contains(isp.Servers, only) && held.relayAddr().IsValid() {
			// The server's identifier is not an address ispmux sends
			// to (a server-identifier statement, a service address):
			// the server that granted the lease is the ACK's source.
			only = held.relayAddr()
		}
	}
	if !slices.Contains(isp.Servers, only) {
		// Not one of isp's servers (none chosen, or an address the
		// configuration does not name): to every server. What the
		// transaction notes (relayedTo) is what sendRelay sends.
		only = netip.Addr{}
	}
	if t != nil {
		p.tx.relayedTo(t, only, early && !only.IsValid())
	}
	gw, ok := p.nextHop(isp)
	if !ok {
		if !p.resolvedOnce(isp) && time.Since(p.born) < startupGrace {
			// ispmux has just started and has not resolved the ISP's
			// router yet: the message waits a little for it rather
			// than being refused for our own start-up. Not past
			// startupGrace: a router never resolved by then is the
			// ISP's uplink, not ispmux's start (a trial: a wrong VLAN,
			// blamed on "ispmux is starting" for as long as it ran).
			p.relayLater(pk, t, sk, gen, isp, subj, mt, payload, only, renewal, rn, reg.CustomerID)
			return
		}
		// The ISP cannot be reached now. A renewal of the binding it
		// granted is answered from the binding, as when its servers
		// are silent (answerAfterSilence: within the ISP's lease, the
		// registration unchanged): a field trial's uplink down for 50
		// s past a binding's T1 had its clients drop addresses the ISP
		// still leased them, where a silent server had them answered.
		// Anything else is refused saying so, rather than left to time
		// out blaming the ISP's servers.
		p.count("no_next_hop")
		p.tx.abandon(pk, t)
		// The registration's customer: a device moved to another
		// customer is the ISP's to decide (renewal_customer_changed).
		if rn != nil && p.answerFromBinding(rn, reg.CustomerID, now) {
			p.count("renewal_local_no_next_hop")
			return
		}
		p.refuse(subscribers.EventRejected, subj, netip.Addr{}, "ISP unreachable: next hop not resolved (uplink down?)")
		return
	}
	if p.sendAfterIntents(pk, t, sk, gen, isp, gw, mt, payload, only, renewal) == relayHeld {
		// A RELEASE of this subscriber's old lease is still unsent:
		// the new message would overtake it. The client retransmits.
		p.count("relay_after_pending_intent")
		p.tx.abandon(pk, t)
	}
}

// relayOutcome is what sendAfterIntents did.
type relayOutcome int

const (
	relaySent  relayOutcome = iota
	relayEnded              // the binding ended since: not sent, the transaction forgotten
	relayHeld               // an intent to the ISP could not be sent first: not sent, the transaction kept
)

// sendAfterIntents relays payload (the message of transaction t, accepted
// in sk's generation gen) to isp via gw, after the subscriber's pending
// intents to isp (flushIntentsOf: the ISP hears the old RELEASE first).
//
// It holds sk's stripe of subMu, which endBindingLocked holds from the
// generation's bump to the RELEASE's send, and sends nothing once the
// binding ended since gen (the subscriber's RELEASE, a revocation, a
// move's cut or an expiry, on another goroutine, or while the message
// waited for the next hop at start: relayLater): the message goes out
// before the RELEASE or not at all. Sent after it, a renewal had the ISP
// grant the lease it had just freed again (a server gives a RENEWING
// client the free address it asks for), and its ACK, with no transaction
// left (dropSub), bound nothing: a lease nobody held.
func (p *Proxy) sendAfterIntents(pk pendKey, t *txn, sk subKey, gen uint64, isp *ISP, gw uint64, mt dhcpv4.MessageType,
	payload []byte, only netip.Addr, renewal bool) relayOutcome {
	defer p.lockSub(sk.mac).Unlock()
	if !p.leases.current(sk, gen) {
		p.count("relay_after_end")
		p.tx.abandon(pk, t)
		return relayEnded
	}
	upTo, flushed := p.flushIntentsOf(sk.mac, isp.Name)
	if !flushed {
		return relayHeld
	}
	p.tx.flushedBefore(t, upTo)
	if renewal {
		failpoint.Hit(failpoint.RenewRelayBeforeSend)
		p.count("renewal_relayed")
	}
	p.sendRelay(isp, gw, sk.mac, mt, pk.xid, payload, only)
	return relaySent
}

// sendRelay sends a relayed message via gw to the server only of isp, or
// to every server of isp when only is not valid (relay makes only one of
// isp's servers or invalid).
func (p *Proxy) sendRelay(isp *ISP, gw, mac uint64, mt dhcpv4.MessageType, xid dhcpv4.TransactionID, payload []byte, only netip.Addr) {
	failpoint.Hit(failpoint.RelayBeforeSend)
	sent := false
	for _, srv := range isp.Servers {
		if only.IsValid() && srv != only {
			continue
		}
		if p.injectUDP(isp.Port, gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, payload) {
			sent = true
		}
	}
	if !sent {
		p.count("inject_full")
		return
	}
	p.count(relayedCounter(mt))
	p.ispStat(isp.Index).relayed.Add(1)
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("dhcp relayed", "mac", binding.MACString(mac), "type", mt.String(), "xid", xid.String(),
			"isp", isp.Name, "servers", len(isp.Servers), "bytes", len(payload))
	}
}

// informAddr is where the ACK to the INFORM m, whose frame came from src,
// goes: its ciaddr (RFC 2131 §4.3.5), else src (a client that left ciaddr
// 0, as ISC dhcpd answers it); invalid if neither is set.
func informAddr(m *dhcpv4.DHCPv4, src netip.Addr) netip.Addr {
	if a := addrOf(m.ClientIPAddr); a.IsValid() && !a.IsUnspecified() {
		return a
	}
	if src.IsValid() && !src.IsUnspecified() && src != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return src
	}
	return netip.Addr{}
}

// endByClient ends the subscriber's binding l on its RELEASE or DECLINE
// (payload: the message as relayed, with our Option 82), through an
// intent: durable first, then the tables, then the ISP (see intents.go).
func (p *Proxy) endByClient(sk subKey, l lease, mt dhcpv4.MessageType, payload []byte) {
	kind, ik, why := subscribers.EventReleased, subscribers.IntentRelease, "the subscriber released its lease"
	if mt == dhcpv4.MessageTypeDecline {
		kind, ik, why = subscribers.EventDeclined, subscribers.IntentDecline, "the subscriber declined its address (in use on its link)"
	}
	b := p.full(held{sk, l})
	counter := "relayed_" + strings.ToLower(mt.String())
	in := &subscribers.Intent{Kind: ik, ISP: b.ISP, MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP, Message: payload}
	// Under another client identifier than the binding's, the ISP's
	// server, which holds the lease under the binding's, would ignore the
	// client's message (a trial: the lease stayed held while ispmux said
	// released). A RELEASE goes as a revocation's does, with the
	// binding's identifier and Option 82; a DECLINE (a review) as
	// relayed, with the binding's identifier in place of the client's.
	if otherClientID(&b, clientOption(payload, optClientID)) {
		switch mt {
		case dhcpv4.MessageTypeRelease:
			if isp := p.isps[b.ISP]; isp != nil {
				if rel := p.releaseIntent(b, isp, p.circuitByName(b.Access, b.VLAN), "released by the subscriber under another client identifier"); rel != nil {
					in, counter = rel, "release_other_client_id"
				}
			}
		case dhcpv4.MessageTypeDecline:
			if m, err := dhcpv4.FromBytes(payload); err == nil {
				m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, b.ClientID))
				in.Message, counter = m.ToBytes(), "decline_other_client_id"
			}
		}
	}
	if mt == dhcpv4.MessageTypeDecline && !p.limits.allowDecline(sk, p.now()) {
		// Over the subscriber's DECLINE budget (limit.go): its ISP gets
		// a RELEASE of the address, which stays in its pool.
		if isp := p.isps[b.ISP]; isp != nil {
			if rel := p.releaseIntent(b, isp, p.circuitByName(b.Access, b.VLAN), "declined by the subscriber; over its DECLINE limit, released"); rel != nil {
				in, counter = rel, "decline_limited"
				why += fmt.Sprintf("; over %d DECLINEs in %v: released to the ISP, not declined", declineBurst, declineWindow)
			}
		}
	}
	if p.endBinding(sk, b.Access, in, bindingSubject(b).event(kind, b.IP, why)) {
		p.count(counter)
	}
}

// circuitID expands the template (configs has checked its placeholders).
func circuitID(tmpl string, c *Circuit, mac uint64) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return circuitid.Expand(tmpl, c.Interface, int(c.VLAN), c.Name, binding.MACString(mac))
}

// rateLimited applies the per-MAC and per-circuit limits to a message of
// mac, registered as reg, on c, and reports whether they refused it
// (counted, and a rate-limited event).
func (p *Proxy) rateLimited(c *Circuit, sk subKey, reg registry.Entry, mac uint64, now time.Time) bool {
	limit := p.limits.allow(sk, now)
	if limit == "" {
		return false
	}
	// rate_limited counts both; rate_limited_mac and
	// rate_limited_circuit say which limit it was.
	p.count("rate_limited")
	p.count("rate_limited_" + limit)
	lim := p.lim.Load()
	why := fmt.Sprintf("this subscriber's DHCP rate limit (%d/s, burst %d) exceeded", lim.MACRate, lim.MACBurst)
	if limit == "circuit" {
		why = fmt.Sprintf("access %s's DHCP rate limit (%d/s, burst %d, all its subscribers) exceeded", c.Name, lim.CircuitRate, lim.CircuitBurst)
	}
	p.refuse(subscribers.EventRateLimited, regSubject(mac, c, reg), netip.Addr{}, why)
	return true
}
