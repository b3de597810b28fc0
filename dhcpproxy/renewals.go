package dhcpproxy

import (
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// Client leases and renewals. ispmux gives a subscriber a lease of at most
// Limits.ClientLeaseMax (client lease = min(ClientLeaseMax, what is left of
// the ISP's lease); options 51, 58 = half of it, 59 = 7/8 in every OFFER
// and ACK it delivers, never the ISP's 58/59), so the subscriber comes
// back at least every ClientLeaseMax / 2. What it asks then is decided
// here, statelessly, from the stored binding and the registry:
//
//   - A REQUEST without a server identifier (INIT-REBOOT, RENEWING,
//     REBINDING) naming (option 50, else ciaddr) anything but the address
//     of the subscriber's binding at its current ISP (the registry's) is
//     NAKed by ispmux with its own server-id and never relayed: the client
//     starts over with a DISCOVER to its ISP. A binding at another ISP (the
//     device moved) ends first, through an intent (a RELEASE to the old
//     ISP): make-before-break, see moves.go.
//   - Its own address, before the ISP's T1 (the ISP's option 58 from the
//     stored ACK, else half the ISP's lease) and with at least
//     ClientLeaseMax of the ISP's lease left: answered by ispmux from the
//     binding with the ISP's stored ACK options (router, DNS, 121 ...),
//     nothing stored, nothing relayed. With less left the renewal is
//     relayed: a local answer would cut the client's lease short, and
//     clients round short leases their own way (busybox udhcpc takes any
//     lease under 30 s as 30 s and renews too late: the soak found it).
//   - Past the ISP's T1, or too little left: relayed as any REQUEST (Option 82, the ISP's
//     server-id); the ISP's ACK is committed and delivered, its NAK passed
//     on. If the ISP stays silent (dhcp.timeout), ispmux answers from the
//     binding, bounded by the ISP's expiry; the next renewal is relayed
//     again. Past the ISP's expiry the binding is gone (expiry tick): the
//     rule above NAKs.

// DefaultClientLeaseMax is Limits.ClientLeaseMax when it is 0.
const DefaultClientLeaseMax = 10 * time.Minute

// clientLease is the lease a subscriber is given when remaining is what
// is left of its ISP's lease: at most ClientLeaseMax, whole seconds.
func (p *Proxy) clientLease(remaining time.Duration) time.Duration {
	return min(p.lim.Load().ClientLeaseMax, remaining).Truncate(time.Second)
}

// ispRenewal is when the ISP's renewal time (T1) of b falls: its option 58
// in the stored ACK (if shorter than the lease), else half the lease,
// counted from the lease's start (Expires - LeaseTime). Zero when the lease
// time is unknown (a binding stored before schema 2): every renewal is
// relayed.
func ispRenewal(b *subscribers.Binding) time.Time {
	if b.LeaseTime <= 0 {
		return time.Time{}
	}
	t1 := ispTimer(b, optRenewalTime)
	if t1 == 0 {
		t1 = b.LeaseTime / 2
	}
	return b.Expires.Add(t1 - b.LeaseTime)
}

// ispTimer is the time option code (58 T1, 59 T2) of b's stored ACK
// options when it is set and less than the lease time; 0 otherwise.
func ispTimer(b *subscribers.Binding, code byte) time.Duration {
	var t time.Duration
	forEachTLV(b.Options, func(c byte, data []byte) {
		if c == code && len(data) == 4 {
			v := time.Duration(uint32(data[0])<<24|uint32(data[1])<<16|uint32(data[2])<<8|uint32(data[3])) * time.Second
			if v > 0 && v < b.LeaseTime {
				t = v
			}
		}
	})
	return t
}

// localRenewalDue reports whether a renewal of lease l at now is one
// ispmux answers itself (answerLocally, which may still decline it):
// before the ISP's T1, with at least client_lease_max of its lease left.
// Else it is relayed.
func (p *Proxy) localRenewalDue(l lease, now time.Time) bool {
	return now.UnixNano() < l.renewAt && time.Duration(l.expires-now.UnixNano()) >= p.lim.Load().ClientLeaseMax
}

// anyCustomer is answerLocally's customer when the binding's customer is
// not checked: after the ISP's silence to the renewal, which carried the
// registration's customer, the device keeps the lease it holds.
const anyCustomer = "\x00any"

// What serveRequest decided for a registered subscriber's message.
const (
	relayIt      = iota // relay it as usual
	relayRenewal        // a renewal past the ISP's T1: relay it, and answer from the binding if the ISP stays silent
	handled             // answered (or dropped) here
)

// serveRequest applies the client-lease rules (above), the end of a moved
// device's old binding and of its bindings on other circuits
// (endOtherCircuits: taken over, or the message refused) to a registered
// subscriber's message m (raw: its bytes) before it is relayed, and says
// what to do with it. A message from the holder of a binding withdraws
// another circuit's claim on it.
func (p *Proxy) serveRequest(c *Circuit, m *dhcpv4.DHCPv4, raw []byte, sk subKey, reg *registry.Entry, now time.Time) int {
	mt := m.MessageType()
	l, held := p.leases.get(sk)
	// Ended by its expiry already, whether or not the tick has run.
	held = held && l.endsAfter(now)
	if held && p.leases.heard(sk) {
		// Its holder, on its own circuit: the other circuit asking
		// for its MAC is not where the device went (endOtherCircuits).
		p.count("moved_circuit_withdrawn")
	}
	moved := held && p.ispAt[l.isp].Name != reg.ISP
	if mt == dhcpv4.MessageTypeRequest && !m.Options.Has(dhcpv4.OptionServerIdentifier) {
		asked := addrOf(m.RequestedIPAddress())
		if !asked.IsValid() || asked.IsUnspecified() {
			asked = addrOf(m.ClientIPAddr)
		}
		if asked.IsValid() && !asked.IsUnspecified() {
			if !held || moved || asked != l.addr() {
				why := "not your lease: start over"
				if moved {
					failpoint.Hit(failpoint.MoveNakBeforeEnd)
					if !p.endMoved(sk, l) {
						return handled // nothing changed; the client asks again
					}
					p.holdSwitched(c, sk.mac, reg, now)
					p.count("move_nak")
					why = "your service moved: start over"
				}
				p.count("request_nak")
				p.nak(c, m, why)
				if moved {
					failpoint.Hit(failpoint.MoveAfterNak)
				}
				return handled
			}
			if p.localRenewalDue(l, now) && p.answerLocally(c, sk, l, raw, m.Options.Get(dhcpv4.OptionClientIdentifier), reg.CustomerID, false, now) {
				p.count("renewal_local")
				failpoint.Hit(failpoint.RenewLocalAfterAck)
				return handled
			}
			return relayRenewal
		}
	}
	if mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest {
		if !p.endOtherCircuits(c, sk, reg, now) {
			return handled
		}
	}
	if moved {
		switch mt {
		case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
			// The device turns to its new ISP: the old binding ends
			// first, and its RELEASE goes before this message
			// (flushIntentsOf).
			if !p.endMoved(sk, l) {
				return handled
			}
			p.holdSwitched(c, sk.mac, reg, now)
		case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
			// Of its old lease: ended, the old ISP told (RELEASE).
			if p.endMoved(sk, l) {
				p.holdSwitched(c, sk.mac, reg, now)
			}
			return handled
		}
	}
	return relayIt
}

// answerLocally sends the subscriber ispmux's own ACK to its renewal raw
// for sk's binding l (a client lease of what is left of the ISP's lease,
// at most ClientLeaseMax, with the ISP's stored ACK options, read from the
// store), made to fit what the client takes (fitReply), and reports
// whether it did: not for a binding without stored options (from before
// schema 2), with less than a second left, or whose essential options
// alone do not fit, nor under another client identifier than the
// binding's, nor for a binding of another customer than customer (the
// registration's; anyCustomer: not checked). The client lease's end is
// noted (gaveClient).
//
// quiet: the reasons it declines are not counted (they were, when this
// renewal was first tried locally: renewNote.tried).
func (p *Proxy) answerLocally(c *Circuit, sk subKey, l lease, raw, clientID []byte, customer string, quiet bool, now time.Time) bool {
	count := p.count
	if quiet {
		count = func(string) {}
	}
	if l.flags&leaseOptions == 0 {
		return false
	}
	lt := p.clientLease(time.Duration(l.expires - now.UnixNano()))
	if lt < time.Second {
		return false
	}
	b := p.full(held{sk, l})
	if len(b.Options) == 0 {
		return false
	}
	// Another client identifier than the binding's (a client restarted
	// with a new one): the ISP's server holds the lease under the old
	// one, and decides (its NAK ends the binding and releases that lease,
	// endByNak). Answered here, the client then released under the new
	// identifier, which the server ignored: the lease stayed held, ispmux
	// said released, and a loop of it drained a pool (a trial).
	// A renewal without option 61 is not another client: clients that
	// send it only in DISCOVER and REQUEST keep their local answers.
	if len(clientID) > 0 && otherClientID(&b, clientID) {
		count("renewal_other_client_id")
		return false
	}
	// The device belongs to another customer of the same ISP since it was
	// bound (moved by the ISP or the operator, or claimed on the portal):
	// the ISP validates subscribers by the subscriber-id it is sent, and
	// answered locally it would go on seeing the old customer's until its
	// T1, up to half a lease. Relayed, the ISP sees the new one now and
	// decides (its ACK binds the device to it, its NAK ends the binding).
	if customer != anyCustomer && b.Customer != customer {
		count("renewal_customer_changed")
		return false
	}
	// The client renamed itself since the ISP's ACK (renamed): relayed,
	// the ISP records the new name and its ACK, committed, carries it to
	// the client. After the ISP's silence (anyCustomer) the device keeps
	// its lease under the old name. An ISP that names its clients
	// itself (leaseOwnNames) is not compared with.
	if customer != anyCustomer && l.flags&leaseOwnNames == 0 && renamed(b.Options, raw) {
		count("renewal_renamed")
		return false
	}
	ack := localACK(raw, l.addr(), b.Options, b.Boot, c.Addr, lt, clientID)
	if limit := p.replyLimit(c, maxReply(raw)); len(ack) > limit {
		// The ISP's options (its server may have put some in
		// file/sname) do not fit what the client takes or the access
		// port's MTU as localACK lays them out: laid out again, as the
		// ISP's ACK was (fitReply).
		if ack, _ = fitReply(ack, limit, requestList(raw)); ack == nil {
			// Not even its essential options: the ISP answers (and
			// its answer is refused the same way).
			count("renewal_local_too_big")
			return false
		}
	}
	p.deliverBytes(c, ack)
	p.leases.gaveClient(sk, l, clientEnd(now, lt))
	return true
}

// requestList is the parameter request list (option 55) of the client
// message raw (clientOption).
func requestList(raw []byte) []byte {
	return clientOption(raw, optParamRequest)
}

// maxReply is the longest DHCP message the client of request raw takes:
// maxReplyOf its option 57 (clientOption).
func maxReply(raw []byte) int {
	return maxReplyOf(clientOption(raw, optMaxMessageSize))
}

// clientOption is option code of the client message raw, its instances in
// the options field concatenated (RFC 3396, RFC 2131 §4.1), as the
// parser reads it (dhcpv4.Options.Get); nil when raw has none. What
// fitReply makes a reply fit (options 55 and 57) is read here alone,
// for the ISP's answer (the transaction's) and for ispmux's own
// (answerLocally).
func clientOption(raw []byte, code byte) []byte {
	var v []byte
	forEachOption(raw, func(c byte, data []byte) {
		if c == code {
			v = append(v, data...)
		}
	})
	return v
}

// maxReplyOf is the longest DHCP message a client whose option 57 is v
// takes: 548 bytes, a 576-byte IP datagram (RFC 2131 §2: what every
// client takes, 312 bytes of options; busybox udhcpc drops more than its
// buffer in raw-socket mode), or what v asks for (RFC 2132 §9.10, the IP
// datagram's size: less 28 for the IP and UDP headers) up to what one
// Ethernet frame carries.
func maxReplyOf(v []byte) int {
	limit := 576 - ipv4HeaderLen - udpHeaderLen
	if len(v) == 2 {
		limit = max(limit, min(int(v[0])<<8|int(v[1])-ipv4HeaderLen-udpHeaderLen, 1500-ipv4HeaderLen-udpHeaderLen))
	}
	return limit
}

// localACK builds ispmux's DHCPACK to the client REQUEST req (bytes that
// dhcpv4.FromBytes accepted) for address ip: xid, flags, ciaddr and chaddr
// from req; yiaddr ip; server-id sid (ours); the lease options of lease
// (appendLeaseOptions); then the ISP's stored ACK options opts except
// those ispmux sets itself (53, 54, 51, 58, 59, 61, never 82); the
// client's identifier echoed (RFC 6842) when it sent one; siaddr, sname
// and file from boot (subscribers.Binding.Boot), as the ISP's ACK had them
// (RFC 2131 table 3: every ACK carries them).
func localACK(req []byte, ip netip.Addr, opts, boot []byte, sid netip.Addr, lease time.Duration, clientID []byte) []byte {
	out := make([]byte, optionsStart, optionsStart+48+len(opts)+len(clientID))
	out[0], out[1], out[2] = byte(dhcpv4.OpcodeBootReply), 1, 6
	copy(out[4:8], req[4:8])     // xid
	copy(out[10:12], req[10:12]) // flags (broadcast)
	copy(out[12:16], req[12:16]) // ciaddr
	a := ip.As4()
	copy(out[16:20], a[:])
	copy(out[28:44], req[28:44]) // chaddr
	if len(boot) == subscribers.BootLen {
		copy(out[20:24], boot[:4])              // siaddr
		copy(out[snameStart:fileEnd], boot[4:]) // sname, file
	}
	copy(out[236:240], magicCookie[:])
	s := sid.As4()
	out = append(out, optMessageType, 1, byte(dhcpv4.MessageTypeAck), optServerID, 4, s[0], s[1], s[2], s[3])
	out = appendLeaseOptions(out, lease)
	forEachTLV(opts, func(code byte, data []byte) {
		if ispOwned(code) {
			return
		}
		switch code {
		case optMessageType, optServerID, optClientID, optRapidCommit:
			return
		}
		out = append(out, code, byte(len(data)))
		out = append(out, data...)
	})
	if n := len(clientID); n > 0 && n <= 255 {
		out = append(out, optClientID, byte(n))
		out = append(out, clientID...)
	}
	return finish(out)
}

// magicCookie opens a DHCP message's options (RFC 2131 §3).
var magicCookie = [4]byte{99, 130, 83, 99}

// deliverBytes sends a reply ispmux built (not a NAK) to the subscriber, as
// deliver does: unicast to ciaddr, broadcast if the client asked for it,
// else unicast to yiaddr; the frame goes to chaddr.
func (p *Proxy) deliverBytes(c *Circuit, payload []byte) {
	dstMAC := binding.MAC48([6]byte(payload[28:34]))
	ciaddr := netip.AddrFrom4([4]byte(payload[12:16]))
	yiaddr := netip.AddrFrom4([4]byte(payload[16:20]))
	dst := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	switch {
	case !ciaddr.IsUnspecified():
		dst = ciaddr
	case payload[10]&0x80 != 0: // broadcast flag
	case !yiaddr.IsUnspecified():
		dst = yiaddr
	}
	if !p.injectUDP(c.Port, dstMAC, c.MAC, c.VLAN, c.Addr, dst, 67, 68, payload) {
		p.count("inject_full")
	}
}

// answerAfterSilence answers a renewal the ISP did not answer in time (to)
// from the binding, if the subscriber still holds it at that ISP, and its
// registration is still there: bounded by the ISP's expiry.
func (p *Proxy) answerAfterSilence(to timedOut, now time.Time) bool {
	// Any customer: the renewal carried the registration's to the ISP,
	// which was silent.
	if !p.answerFromBinding(to.renew, anyCustomer, now) {
		return false
	}
	p.count("renewal_local_after_silence")
	failpoint.Hit(failpoint.RenewSilenceAfterAck)
	return true
}

// answerFromBinding answers the renewal r the ISP cannot answer (silent,
// or its router unreachable) from the binding, if the subscriber still
// holds it at that ISP, its registration is still there, and the binding
// is of customer (anyCustomer: not checked): bounded by the ISP's expiry.
// It reports whether it did.
func (p *Proxy) answerFromBinding(r *renewNote, customer string, now time.Time) bool {
	l, ok := p.leases.get(r.sub)
	if !ok || l.isp != r.isp.Index || l.addr() != r.ip || !l.endsAfter(now) {
		return false
	}
	if reg, ok := p.reg.Lookup(r.sub.mac); !ok || reg.ISP != r.isp.Name || reg.Blocked || reg.Suspended() {
		return false
	}
	c := p.circuits[r.sub.circuit]
	return c != nil && p.answerLocally(c, r.sub, l, r.req, r.clientID, customer, r.tried, now)
}

// renewNoteOf is the renewNote of subscriber sk's renewal m (raw, kept
// as the note's req) of its binding held at isp.
func (p *Proxy) renewNoteOf(sk subKey, isp *ISP, held lease, raw []byte, m *dhcpv4.DHCPv4, now time.Time) *renewNote {
	return &renewNote{sub: sk, isp: isp, ip: held.addr(), req: raw,
		clientID: m.Options.Get(dhcpv4.OptionClientIdentifier), tried: p.localRenewalDue(held, now)}
}

// renewNote is what a renewal relayed past the ISP's T1 needs for the
// answer from the binding should the ISP stay silent.
type renewNote struct {
	sub      subKey
	isp      *ISP
	ip       netip.Addr // the binding's address the client renews
	req      []byte     // the client's REQUEST (a copy)
	clientID []byte
	// tried: answerLocally had declined it before it was relayed (before
	// the ISP's T1), counting why; the answer from the binding does not
	// count it again.
	tried bool
}
