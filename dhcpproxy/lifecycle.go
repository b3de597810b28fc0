package dhcpproxy

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// RevalidateMACs ends, while running, every binding of macs whose
// registration no longer matches it (after a reload or a tenant change: a
// device moved, blocked, detached, its customer suspended or deleted): the
// subscriber stops forwarding at once instead of at lease expiry, and the
// ISP is sent a RELEASE on its behalf. It is linear in len(macs), not in
// the bindings held. It also ends the onboarding lease of a MAC blocked
// now (onboarding-ended, reason blocked): a blocked MAC keeps no walled
// garden. A moved device's old binding keeps forwarding until its next
// REQUEST (make-before-break, moves.go); RevalidateMACsImmediate cuts it
// at once. It returns how many bindings no longer match.
func (p *Proxy) RevalidateMACs(macs []uint64) int { return p.revalidateMACs(macs, false) }

// stale says why a binding of mac on access at isp (names) no longer
// matches the subscriber's registration, or "" when it still does.
func (p *Proxy) stale(mac uint64, access, isp string) string {
	if p.isStatic(mac) {
		return "subscriber is now static"
	}
	reg, ok := p.reg.Lookup(mac)
	switch {
	case !ok:
		return "registration withdrawn"
	case reg.ISP != isp:
		// Never naming the new ISP, nor saying anything of the new
		// registration (its customer suspended, say): the event is
		// the old one's, whose customer it was (a switching trial's
		// alpha was told "customer suspended" of its active customer).
		return "subscriber moved to another ISP"
	case reg.Blocked:
		return "subscriber blocked"
	case reg.Suspended():
		return "customer suspended"
	case reg.Access != "" && reg.Access != access:
		return "registered on access " + reg.Access
	}
	return ""
}

// bindAndAck commits the lease durably (with its bound or renewed event),
// installs it, and only then sends the ACK to the subscriber. opts are the
// ACK's options (Option 82 stripped) and boot its siaddr, sname and file
// (bootFields), kept with the binding.
//
// An ACK is decided in passes of bindOnce, each with the subscriber's
// stripe of subMu held, and between two passes another subscriber's
// binding may be ended with no stripe held (the holder's may be the
// asker's): the holder of the ACK's address whose lease ran out, the
// expiry tick not having ended it yet (endLapsedHolder), and, with the
// ACK's client identifier's stripe of cidMu held (clientid_ack.go), the
// binding of another MAC that holds the identifier, whose lease ran out
// (endLapsedHolder too), or, its lease live, that holds the identifier
// of its owner, the asker (reclaimAtACK). Each is done once at most
// (four passes at most), and the next pass decides the ACK again.
func (p *Proxy) bindAndAck(t *txn, m *dhcpv4.DHCPv4, ack, opts, boot []byte, from netip.Addr) {
	if key := cidKey(t.isp.Index, t.clientID); key != 0 {
		defer p.cidMu.lock(key).Unlock()
	}
	gen, do := t.gen, passes{reclaim: true, lapsed: true, cidLapsed: true}
	var unrevoked held // the holder whose revocation the store refused (ackClientID)
	// The lapsed holder whose end the store refused (of the address or
	// of the identifier: refused, the former ends the ACK's passes).
	var unended held
	for {
		h, v, next, then := p.bindOnce(t, m, ack, opts, boot, from, gen, do, unrevoked, unended)
		switch then {
		case passReclaim:
			if p.reclaimAtACK(t, h, v) {
				unrevoked = h
			}
			do.reclaim = false
		case passLapsed:
			if p.endLapsedHolder(h, "bind_conflict_lapsed") {
				unended = h
			}
			do.lapsed = false
		case passLapsedCID:
			if p.endLapsedHolder(h, "client_id_lapsed") {
				unended = h
			}
			do.cidLapsed = false
		default:
			return
		}
		gen = next
	}
}

// passNext is what bindAndAck does after a pass of bindOnce.
type passNext uint8

const (
	passDone      passNext = iota // the ACK is decided: bound, or refused
	passReclaim                   // revoke the holder of the asker's client identifier, then decide again
	passLapsed                    // end the lapsed holder of the ACK's address, then decide again
	passLapsedCID                 // end the lapsed holder of the ACK's client identifier, then decide again
)

// passes says which of bindAndAck's actions between two passes are still
// to be done at most once: each is done once at most.
type passes struct {
	reclaim   bool // passReclaim
	lapsed    bool // passLapsed
	cidLapsed bool // passLapsedCID
}

// bindOnce is one pass of bindAndAck, with t's subscriber's stripe of
// subMu held, for the subscriber's generation gen (t.gen at the first
// pass). It says what is to be done before the ACK is decided again:
// passReclaim (only if do.reclaim), the ACK's client identifier to be
// reclaimed from holder h (the bound's verdict v); passLapsed (only if
// do.lapsed), another subscriber's binding h, whose lease ran out, to be
// ended, as it holds the ACK's address; passLapsedCID (only if
// do.cidLapsed), the same, as h holds the ACK's client identifier
// (ackClientID). Then nothing was bound, sent or
// released but the end of the subscriber's own lapsed binding
// (endExpiredLocked), and next is the generation the next pass expects
// (that end's: it is no end after the relay, ack_after_end). unrevoked,
// after a reclaim, is the holder whose revocation the store refused
// (ackClientID); unended, after a lapsed holder's end, the holder whose
// end the store refused (told as such in the asker's rejected event).
func (p *Proxy) bindOnce(t *txn, m *dhcpv4.DHCPv4, ack, opts, boot []byte, from netip.Addr, gen uint64, do passes, unrevoked, unended held) (h held, v reclaimVerdict, next uint64, then passNext) {
	c := t.circuit
	mac := t.sub.mac
	defer p.lockSub(mac).Unlock()
	if !p.leases.current(t.sub, gen) {
		// The subscriber's binding ended (its RELEASE, a revocation:
		// committed) after this transaction was relayed: the ISP
		// processed the REQUEST first and the RELEASE after, and holds
		// nothing. An end the store refused ended nothing: the ACK
		// binds the binding that stands.
		p.count("ack_after_end")
		return
	}
	subj := regSubject(mac, c, t.reg)
	subj.isp = t.isp.Name
	ip := addrOf(m.YourIPAddr)
	if !ip.IsValid() || ip.IsUnspecified() {
		// Nothing to bind (an ACK to a REQUEST carries the address,
		// RFC 2131 table 3): told as a lease time missing is, where it
		// was only counted, and the client's REQUEST went unanswered.
		p.count("ack_without_address")
		p.refuse(subscribers.EventRejected, subj, netip.Addr{}, "the ISP's ACK has no address (yiaddr 0.0.0.0); not bound")
		p.nakAck(t, m, "no address")
		return
	}
	lt := m.IPAddressLeaseTime(0)
	if lt <= 0 {
		// Nothing to bind: the client is told (it starts over) and
		// the refusal is an event, not only a counter.
		p.count("ack_without_lease_time")
		p.refuse(subscribers.EventRejected, subj, ip, "the ISP's ACK has no lease time (option 51 missing or 0); not bound")
		p.nakAck(t, m, "no lease time")
		p.releaseRefused(t, t.isp, m, ip, from, "ack_refused", "the ACK has no lease time; not bound")
		return
	}
	sid := p.tx.serverID(t)
	if a := addrOf(m.ServerIdentifier()); a.IsValid() {
		sid = a
	}
	old, hadOld := p.leases.get(t.sub)
	if hadOld && !old.endsAfter(time.Now()) {
		// Its lease ran out before this ACK, and the expiry tick has
		// not ended it yet (ispmux frozen past the lease: a crash
		// trial's SIGSTOP): ended here as the tick ends it, with its
		// expired event, and this ACK is a new binding. It was a
		// "renewed" one: the ISP's history showed a lease going on
		// where there was none.
		if !p.endExpiredLocked(held{t.sub, old}) {
			return // not ended (a store error, logged): no ACK either
		}
		p.count("expired")
		old, hadOld = lease{}, false
	}
	// A new ISP or a new address is a new binding (its own event and log
	// line: the audit trail must show which address a subscriber had).
	moved := hadOld && (old.isp != t.isp.Index || old.addr() != ip)
	if !hadOld && p.leases.full(t.sub, p.lim.Load().MaxBindingsPerCircuit) {
		p.count("circuit_full")
		p.refuse(subscribers.EventRejected, subj, ip, "too many bindings on access "+c.Name)
		p.releaseRefused(t, t.isp, m, ip, from, "ack_refused", "too many bindings on the subscriber's access circuit; not bound")
		return
	}
	// The registration may have changed while the ISP was answering (the
	// subscriber blocked, removed or moved by a reload): no binding then.
	if why := p.stale(mac, c.Name, t.isp.Name); why != "" {
		p.count("ack_registration_changed")
		p.refuse(subscribers.EventRejected, subj, ip, "not bound: "+why+" during the exchange")
		p.nakAck(t, m, "not admitted")
		p.releaseRefused(t, t.isp, m, ip, from, "ack_refused", "not bound: "+why+" during the exchange")
		return
	}
	// An address no subscriber may hold (ours, broadcast, multicast...)
	// is the ISP's mistake: declined, like an address in use.
	if why := p.unusable(c, t.isp, ip); why != "" {
		p.count("ack_unusable_address")
		p.refuse(subscribers.EventRejected, subj, ip, "the ISP assigned an unusable address ("+why+"); declined to the ISP")
		p.declineAndNak(t, m, ip, sid)
		return
	}
	// An address another subscriber holds at this ISP (a static customer
	// inside the ISP's pool, say) cannot be installed: checked before
	// anything is committed, the lease is declined to the ISP (so its
	// server takes the address out of its pool and offers another) and
	// the subscriber is NAKed (so it starts over at once).
	if err := p.tables.CheckBind(binding.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: t.isp.Index, IP: ip}); err != nil {
		holder, ok := p.tables.Holder(t.isp.Index, ip)
		if ok && !holder.Static && do.lapsed {
			if h, ok := p.lapsedHolder(holder); ok {
				// Its lease ran out and the expiry tick has not
				// ended it yet (a mass expiry ends 4096 a tick):
				// the ISP's server gave the address on, rightly.
				// Ended first, as the tick would, and decided again.
				return h, 0, p.leases.generation(t.sub), passLapsed
			}
		}
		p.count("bind_conflict")
		if ok && !holder.Static {
			// Another DHCP subscriber holds it: the ISP handed one
			// lease to two clients (its server lost its leases, a
			// field trial's wiped Kea; or a shared or forged client
			// identifier). Declining it would take the address from
			// its holder: only this subscriber is refused.
			why := "the ISP assigned the address of DHCP subscriber " + binding.MACString(holder.MAC) +
				", which holds it (the ISP's server lost its leases, or the two share a client identifier?); refused"
			if p.isUnended(holder, unended) {
				// Its lease ran out, and the store refused to end
				// it (store_error, logged): the ISP was right.
				why = "the ISP assigned the address of DHCP subscriber " + binding.MACString(holder.MAC) +
					", whose lease of it ran out; not ended: the store refused to end that binding; refused"
			}
			p.refuse(subscribers.EventRejected, subj, ip, why)
			p.nakAck(t, m, "address in use")
			return
		}
		p.refuse(subscribers.EventRejected, subj, ip, "the ISP assigned an address in use: "+err.Error()+"; declined to the ISP")
		p.declineAndNak(t, m, ip, sid)
		return
	}
	// A client identifier another MAC's binding at this ISP took while
	// this exchange was under way (clientid_ack.go): the relay's rule,
	// applied again before anything is committed.
	if len(t.clientID) > 0 {
		var verdict ackCID
		switch h, v, verdict = p.ackClientID(t, subj, ip, do, unrevoked, unended); verdict {
		case ackCIDReclaim:
			return h, v, p.leases.generation(t.sub), passReclaim
		case ackCIDLapsed:
			return h, 0, p.leases.generation(t.sub), passLapsedCID
		case ackCIDRefused:
			p.nakAck(t, m, "client identifier in use")
			p.releaseRefused(t, t.isp, m, ip, from, "ack_refused", "not bound: its client identifier is another subscriber's binding's at this ISP")
			return
		}
	}
	now := time.Now()
	// The binding it goes on from, at this ISP (a renewal, or another
	// address): read once, for its start and, at another address, its
	// RELEASE (recordReplaced).
	var prev subscribers.Binding
	var prevStored bool
	goesOn := hadOld && old.isp == t.isp.Index
	if goesOn {
		prev, prevStored = p.stored(held{t.sub, old})
	}
	b := subscribers.Binding{
		MAC: binding.MACBytes(mac), Access: c.Name, VLAN: c.VLAN, ISP: t.isp.Name, IP: ip,
		Circuit: circuitID(t.isp.CircuitID, c, mac), ServerID: sid, Expires: now.Add(lt), Updated: now,
		ClientID: t.clientID, Option82: t.op82, Options: opts, LeaseTime: lt, Customer: t.reg.CustomerID, Boot: boot,
		Since: bindingSince(goesOn, prev, prevStored, t.clientID, now),
	}
	// The server that granted it (the ACK's source): with server-id
	// override every server's identifier is ours, and a renewal goes to
	// this one (relay).
	if from.IsValid() {
		b.Relay = from
	} else if len(t.isp.Servers) > 0 {
		b.Relay = t.isp.Servers[0]
	}
	// The binding and its event are one transaction (one fsync): a new
	// binding is "bound", a renewal the ISP granted is "renewed".
	kind, why := subscribers.EventBound, "lease "+leaseString(lt)
	if hadOld && !moved {
		kind, why = subscribers.EventRenewed, renewedWhy(lt)
	}
	// The intents this exchange proves sent are completed first: a crash
	// after the commit must not leave one pending beside the new lease.
	if err := p.completeAnswered(t); err != nil {
		p.storeError("dhcp: intent not completed; binding not committed, ACK withheld", "mac", binding.MACString(mac), "err", err)
		return
	}
	// The lease the subscriber held at this ISP before this one, at
	// another address: its RELEASE is recorded before the commit
	// replaces it in the store, and sent once the commit is made
	// (releaseReplaced).
	var replaced *subscribers.Intent
	if goesOn && old.addr() != ip {
		replaced = p.recordReplaced(t, c, prev, ip)
		// The bound event says what it replaces: the old address has
		// no end event of its own (the binding is replaced in one
		// transaction), and a consumer that follows addresses saw two
		// at once (a trial).
		why += "; replaces " + old.addr().String()
		if replaced != nil {
			why += " (its RELEASE to the ISP recorded)"
		}
	}
	failpoint.Hit(failpoint.BindBeforeCommit)
	ev := subj.event(kind, ip, why)
	ev.LeaseEnd = b.Expires
	e, err := p.store.CommitBindingEvent(b, ev)
	if err != nil {
		p.storeError("dhcp: binding not committed; ACK withheld", "mac", binding.MACString(mac), "err", err)
		if replaced != nil {
			// The old binding stands: its lease is not to be
			// released (a replay would find it installed anyway).
			_ = p.store.CompleteIntent(replaced.ID)
		}
		return
	}
	failpoint.Hit(failpoint.BindAfterCommit)
	if hadOld && old.addr() != ip {
		p.tables.Unbind(c.Port, c.VLAN, mac)
	}
	if err := p.tables.Bind(binding.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: t.isp.Index, IP: ip}); err != nil {
		// CheckBind said it would fit; a static binding added by a
		// reload meanwhile took the address. The committed binding is
		// revoked (RELEASE to the ISP) and the subscriber gets no ACK.
		p.count("bind_conflict")
		p.revokeLocked(t.sub, b, "address not installable: "+err.Error())
		if replaced != nil {
			p.releaseReplaced(t, *replaced, ip) // the old lease is nobody's either
		}
		return
	}
	l := leaseOf(&b, t.isp)
	if !namesEchoed(t.names, opts) {
		l.flags |= leaseOwnNames // renamed.go
	}
	// The client lease the ACK gives (relayDown's option 51), counted
	// by the messages' clock, as the claims it bounds (endOtherCircuits).
	l.setClientEnd(clientEnd(p.now(), p.clientLease(lt)))
	p.leases.put(t.sub, l)
	if replaced != nil {
		// Sent now that the lease table holds the new address: the
		// send drops a RELEASE of an address a binding holds.
		p.releaseReplaced(t, *replaced, ip)
	}
	p.deliver(c, m, ack)
	failpoint.Hit(failpoint.BindAfterAck)
	p.count("ack")
	st := p.ispStat(t.isp.Index)
	st.outcomes[OutcomeAck].Add(1)
	if t.msgType == dhcpv4.MessageTypeRequest && !t.relayed.IsZero() {
		st.requestAck.Since(t.relayed)
	}
	if kind == subscribers.EventBound {
		p.logEvent(e)
	} else {
		p.count("renewed")
	}
	return
}

// bindingSince is the start (Binding.Since) of the binding an ACK at now
// commits with client identifier clientID: that of prev, the binding it
// goes on from at the same ISP (goesOn: a renewal, or another address),
// if prev holds the same identifier, else now. A binding prev read as
// stored before its start was (format 5) carries the zero (not known)
// over, and one the store could not give (!stored) has it not known
// either: now would make the holder younger than it is, and the reclaim's
// age rule (mayReclaim) falls back to its registration for a zero.
func bindingSince(goesOn bool, prev subscribers.Binding, stored bool, clientID []byte, now time.Time) time.Time {
	switch {
	case !goesOn:
		return now
	case !stored:
		return time.Time{}
	case !bytes.Equal(prev.ClientID, clientID):
		return now // it holds another identifier from now
	}
	return prev.Since
}

// releaseRefused releases the lease of ip that server from of isp
// committed with its ACK m to t, which ispmux refused (why; bindAndAck,
// or too big: releaseTooBig): not bound, not delivered, the client holds
// nothing (NAKed, it starts over; not answered, it asks again, and each
// ACK refused is released in turn), and the ISP would hold the address
// for nobody until its lease ran out. Not an address a binding ispmux
// installed holds at that ISP (installedAt): the subscriber's own (a
// renewal's ACK refused: the binding stands, and its own end tells the
// ISP) or another's, checked again when the RELEASE is sent. Through an
// intent (releaseUnbound): a crash, or the ISP's next hop unresolved,
// delays it, never loses it. Counted as what_released (recorded, or sent),
// or what_not_released.
func (p *Proxy) releaseRefused(t *txn, isp *ISP, m *dhcpv4.DHCPv4, ip, from netip.Addr, what, why string) {
	if p.installedAt(t.sub, isp, ip) {
		return
	}
	if !from.IsValid() || !p.releaseUnbound(isp, t.circuit, from, t.sub, t.op82, t.clientID, m, why) {
		p.count(what + "_not_released")
		return
	}
	p.count(what + "_released")
	p.log.Info("dhcp: an ISP's lease in an ACK not delivered released", "mac", binding.MACString(t.sub.mac),
		"isp", isp.Name, "server", from, "ip", ip, "why", why)
}

// recordReplaced records (in the store only) the RELEASE, at t's ISP, of
// old, the lease t's subscriber held there before the ISP's ACK of
// another address, ip, which is to replace it as its binding; nil if it
// could not be recorded (replaced_not_released). The subscriber uses ip
// only. A server that keys leases by client identifier (RFC 4361; Kea,
// ISC dhcpd) keeps the old lease when the client identifier changed, so
// a subscriber sending a new client identifier at every exchange would
// empty the ISP's pool; a server that moved the lease itself ignores the
// RELEASE (no lease of that address for that client). The RELEASE is the
// old lease's own (its client identifier, Option 82 and server), an
// intent of an unbound lease, recorded before the new binding is
// committed: a crash after the commit replays it at the next start; a
// crash before it, or a commit that fails, leaves the old binding, and
// an intent of an unbound lease is dropped, unsent, while a binding
// ispmux installed holds its address (sendIntent).
func (p *Proxy) recordReplaced(t *txn, c *Circuit, old subscribers.Binding, ip netip.Addr) *subscribers.Intent {
	msg := p.revokeMessage(old, t.isp, c, "replaced by "+ip.String())
	if msg == nil {
		p.count("replaced_not_released")
		return nil
	}
	it, err := p.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentReleaseUnbound, ISP: t.isp.Name,
		MAC: old.MAC, Access: c.Name, VLAN: c.VLAN, IP: old.IP, Message: msg})
	if err != nil {
		p.count("replaced_not_released")
		p.storeError("dhcp: RELEASE of a replaced lease not recorded; not sent", "mac", binding.MACString(t.sub.mac),
			"isp", t.isp.Name, "ip", old.IP, "err", err)
		return nil
	}
	return &it
}

// releaseReplaced sends the RELEASE recordReplaced recorded, once the new
// binding (ip) is committed and holds the lease table's entry (or was
// revoked). Counted as replaced_released.
func (p *Proxy) releaseReplaced(t *txn, it subscribers.Intent, ip netip.Addr) {
	p.intents.add(it, false)
	p.sendIntent(pendingIntent{it, false})
	p.count("replaced_released")
	p.log.Info("dhcp: the subscriber's earlier lease at its ISP released: the ISP gave it another address",
		"mac", binding.MACString(t.sub.mac), "isp", t.isp.Name, "old_ip", it.IP, "ip", ip)
}

// leaseString spells a lease time; 0xffffffff seconds is infinite (RFC 2131).
// renewedWhy is the renewed event's reason for an ISP lease of lt: not
// "extended by infinite" (a field trial), and not "extended by lt" either:
// the ISP's lease now runs lt from the renewal, which moves its end by
// less than lt (by lt/2 at a client's T1; a second trial read "lease
// extended by 30s" beside a lease_end 14 s later than the last one).
func renewedWhy(lt time.Duration) string {
	if lt >= 0xffffffff*time.Second {
		return "lease renewed (infinite)"
	}
	return "lease renewed for " + leaseString(lt)
}

func leaseString(d time.Duration) string {
	if d >= 0xffffffff*time.Second {
		return "infinite"
	}
	return d.String()
}

// unusable says why ip cannot be a subscriber's address on circuit c at
// isp, or "" if it can.
func (p *Proxy) unusable(c *Circuit, isp *ISP, ip netip.Addr) string {
	switch {
	case !ip.Is4() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "not a unicast address"
	case ip.As4()[0] >= 240:
		return "a reserved (class E) address"
	case ip == c.Addr:
		return "the subscribers' gateway address"
	case ip == isp.Addr:
		return "our uplink address"
	}
	for _, s := range isp.Servers {
		if ip == s {
			return "the ISP's DHCP server"
		}
	}
	return ""
}
