package dhcpproxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// An ISP that does not answer: the transactions past their deadline
// (txns.expire, Proxy.expireTxns) and what is known of why, noted on the
// transaction while it waited (an ICMP unreachable from the uplink, a
// reply from an address not among the ISP's servers) so that the timeout
// event names the cause instead of blaming a silent server.

// unreachableNote is an ICMP unreachable heard about a message relayed
// to an ISP's server.
type unreachableNote struct {
	at     time.Time
	server netip.Addr
	why    string
}

// noteUnreachable keeps n on the pending transaction at isp that an ICMP
// unreachable quotes (its xid and chaddr mac), if it was relayed to
// n.server. It reports whether there was one.
func (x *txns) noteUnreachable(isp uint8, xid [4]byte, mac uint64, n unreachableNote) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.pending[pendKey{xid, mac, isp}]
	if t == nil || t.sentTo.IsValid() && t.sentTo != n.server {
		return false
	}
	t.unreach = n
	return true
}

// noteUnlisted notes on the pending transaction at isp with xid and
// chaddr mac that a reply to it came from from, an address not among the
// ISP's servers (txn.unlisted).
func (x *txns) noteUnlisted(isp uint8, xid [4]byte, mac uint64, from netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t := x.pending[pendKey{xid, mac, isp}]; t != nil {
		t.unlisted = from
	}
}

// noteMalformed notes that server from answered the transaction of mac
// and xid at isp, if one is pending, with a message it could not parse
// (txn.malformed): its timeout was "no answer from the ISP". Not if the
// transaction's message went to another server only (txn.sentTo), as
// noteUnreachable: from's message, unparsed, answers an earlier one under
// the xid (a late OFFER to the DISCOVER, once the REQUEST went to the
// chosen server alone), and the REQUEST's silence is its server's.
func (x *txns) noteMalformed(isp uint8, xid [4]byte, mac uint64, from netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t := x.pending[pendKey{xid, mac, isp}]; t != nil && (!t.sentTo.IsValid() || t.sentTo == from) {
		t.malformed = from
	}
}

// timedOut is a transaction the ISP did not answer in time.
type timedOut struct {
	subj     subject
	mt       dhcpv4.MessageType
	unreach  unreachableNote
	unlisted netip.Addr // txn.unlisted
	// malformed: the server whose answer could not be parsed
	// (txn.malformed).
	malformed netip.Addr
	otherNak  netip.Addr // txn.otherNak
	renew     *renewNote // a renewal past the ISP's T1 (nil: anything else)
	nakBy     netip.Addr // the server that NAKed the DISCOVER (no OFFER came)
	// refused: a server answered the REQUEST with a reply ispmux refused
	// (its own rejected event): no silence of the ISP.
	refused bool
	// selecting: a SELECTING REQUEST (txn.selecting).
	selecting bool
	// putBack: the exchange was parked, and an answer then unheard
	// (txn.putBack, overtaken.putBack).
	putBack bool
}

// expire removes the transactions past their deadline and returns those
// whose silence is a refusal (an unanswered DISCOVER, a REQUEST), and
// forgets old OFFERs and rapid-commit wins, remaking their maps once a
// burst of them is forgotten (mapMem). The transactions it looks at are
// those whose entry in the deadlines' heap has come up (txndue.go), not
// every one pending; one that stays (its deadline moved on) is queued
// again at its next due, after the loop, so that no entry comes up twice
// in one call.
func (x *txns) expire(now time.Time) []timedOut {
	var tos []timedOut
	x.mu.Lock()
	defer x.mu.Unlock()
	n := monoNanos(now)
	var again []*txn
	// Strictly before now, as now.After(deadline) below: an entry at
	// now would find nothing due and be queued again at now.
	for len(x.dues) > 0 && x.dues[0].at < n {
		var e dueEntry
		e, x.dues = popAt(x.dues)
		t := x.pending[e.pk]
		if t == nil || t.qSeq != e.seq {
			continue // ended, or queued again since: stale
		}
		var ended bool
		if tos, ended = x.expireTxn(e.pk, t, now, tos); !ended {
			again = append(again, t)
		}
	}
	for _, t := range again {
		if x.pending[t.pk] == t {
			x.queueDue(t)
		}
	}
	x.dues = shrunkAt(x.dues)
	// offered, like pending (shrink), is remade once what it holds has
	// fallen to a quarter of its peak: the map of a burst of a million
	// OFFERs, forgotten, kept 218 MB of heap for good (200K: 27 MB).
	x.expireOffers(now)
	// The rapid-commit wins too: an outage's burst of DISCOVERs at an
	// ISP with several servers and rapid commit leaves one for each ACK,
	// a timeout long.
	x.rapidMem.note(len(x.rapid))
	for len(x.rapidAt) > 0 && x.rapidAt[0].at < n {
		var e rapidAt
		e, x.rapidAt = popAt(x.rapidAt)
		if x.rapid[e.pk] == e.w {
			delete(x.rapid, e.pk) // else replaced since: its own entry
		}
	}
	if x.rapidMem.due(len(x.rapid)) {
		x.rapid = remade(x.rapid)
	}
	x.rapidAt = shrunkAt(x.rapidAt)
	return tos
}

// expireTxn is expire's look at t, pending under k, whose entry came up:
// the REQUEST it took over, or t itself, timed out if past due (appended
// to tos), and t removed past its deadline unless a retransmission's copy
// is still to be answered. It reports whether t ended (x.mu held).
func (x *txns) expireTxn(k pendKey, t *txn, now time.Time, tos []timedOut) ([]timedOut, bool) {
	if o := t.overtook; o != nil && !o.due.IsZero() && now.After(o.due) {
		// The REQUEST a DISCOVER took over, still unanswered.
		o.due = time.Time{}
		tos = append(tos, timedOut{subj: regSubject(t.sub.mac, t.circuit, t.reg), mt: dhcpv4.MessageTypeRequest, putBack: o.putBack})
	}
	if now.After(t.deadline) {
		if t.msgType == dhcpv4.MessageTypeDiscover && !t.serverID.IsValid() && (!t.refused || t.nakBy.IsValid()) || t.msgType == dhcpv4.MessageTypeRequest ||
			t.msgType == dhcpv4.MessageTypeInform {
			tos = append(tos, timedOut{regSubject(t.sub.mac, t.circuit, t.reg), t.msgType, t.unreach, t.unlisted, t.malformed, t.otherNak, t.renew, t.nakBy, t.refused, t.selecting, t.putBack})
		}
		// The client retransmitted, and we relayed its copy less
		// than the ISP's time ago: the ISP's silence to the first
		// copy is reported all the same, but the transaction
		// waits for the answer to the latest one. (Deleted, that
		// answer would find no transaction and be dropped, and
		// the client would wait for its next retransmission: in
		// an outage, with the ISP's server behind, 4–8 s more.)
		// A renewal is left as it was: its silence may have been
		// answered from the binding (answerAfterSilence). The
		// latest copy was relayed after any put-back (resume
		// cleared resent): its answer, if any, is heard, and its
		// timeout is no put-back's.
		if wait := t.deadline.Sub(t.relayed); !t.resent.IsZero() && now.Sub(t.resent) < wait && t.renew == nil {
			t.relayed, t.deadline, t.resent = t.resent, t.resent.Add(wait), time.Time{}
			t.putBack = false
			return tos, false
		}
		x.del(k)
		return tos, true
	}
	return tos, false
}

// expireTxns turns the ISP's silence into timeout events.
func (p *Proxy) expireTxns(now time.Time) {
	for _, to := range p.tx.expire(now) {
		if to.mt == dhcpv4.MessageTypeInform {
			// No lease rides on an INFORM: its silence is no refusal
			// (no event), but it is counted. An ISP server that
			// answers straight to ciaddr (RFC 2131 §4.3.5) for an
			// address bound nowhere (set by hand, no binding, not a
			// static subscriber) has its ACK dropped by the datapath
			// (no_route): this is where that shows.
			p.count("inform_unanswered")
			continue
		}
		if to.nakBy.IsValid() {
			// Not silence: the ISP refused the DISCOVER (with a NAK,
			// which answers a REQUEST only, so not passed on).
			p.outcome(to.subj.isp, OutcomeNak)
			p.refuse(subscribers.EventNak, to.subj, netip.Addr{}, fmt.Sprintf("ISP server %s answered the DISCOVER with a NAK; no server offered within %s", to.nakBy, p.lim.Load().Timeout))
			p.handoverTimedOut(to, now)
			continue
		}
		if to.refused {
			// Answered, with a reply refused and reported when it came
			// (rejected): no timeout event. A renewal is still answered
			// from the binding, within the ISP's lease.
			if to.renew != nil {
				p.answerAfterSilence(to, now)
			}
			continue
		}
		p.count("timeout")
		timeout := p.lim.Load().Timeout
		why := fmt.Sprintf("no answer from the ISP to %s within %s", to.mt, timeout)
		if u := to.unreach; u.server.IsValid() && now.Sub(u.at) < 2*timeout {
			why += fmt.Sprintf(" (its server %s: %s)", u.server, u.why)
		}
		if to.unlisted.IsValid() {
			why += fmt.Sprintf(" (an answer came from %s, which is not one of the ISP's dhcp_servers: dropped)", to.unlisted)
		}
		if to.malformed.IsValid() {
			why += fmt.Sprintf(" (its server %s answered with a malformed message: dropped, server_malformed)", to.malformed)
		}
		if to.otherNak.IsValid() {
			why += fmt.Sprintf(" (server %s, which did not grant the lease, NAKed the renewal before the ISP's T2: not acted on)", to.otherNak)
		}
		if to.putBack {
			why += " (counted from its put-back: the exchange was set aside while an end of the subscriber's binding was being stored, which the store refused, and any answer in that time went unheard)"
		}
		if to.renew != nil {
			// Its expiry, should the ISP stay silent, says why.
			p.leases.unanswered(to.renew.sub, to.renew.isp.Index, to.renew.ip)
		}
		if to.renew != nil && p.answerAfterSilence(to, now) {
			why += "; the renewal was answered by ispmux from the binding (within the ISP's lease)"
		}
		p.refuse(subscribers.EventTimeout, to.subj, netip.Addr{}, why)
		p.handoverTimedOut(to, now)
	}
}

// unreachable notes an ICMP destination unreachable received on isp's
// uplink about a DHCP message we relayed to one of its servers: the
// timeout event of that message's transaction (no other) then names the
// cause instead of blaming a silent server.
func (p *Proxy) unreachable(isp *ISP, pkt *classifier.Packet, f []byte) {
	// ICMP header (8 bytes), then the quoted IPv4 header and at least 8
	// bytes of its payload (RFC 792).
	q := f[pkt.L4+8:]
	if len(q) < 28 || q[0]>>4 != 4 || q[9] != classifier.ProtoUDP {
		p.count("icmp_unreachable_other")
		return
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl+8 || binary.BigEndian.Uint16(q[ihl+2:]) != 67 {
		p.count("icmp_unreachable_other")
		return
	}
	// About a message we relayed: from our uplink address, port 67, to
	// one of the ISP's servers. Anything else (a forgery from the ISP's
	// segment, or about someone else's datagram) must not name a server
	// and a cause in the timeouts of the ISP's subscribers.
	srv := netip.AddrFrom4([4]byte(q[16:20]))
	if netip.AddrFrom4([4]byte(q[12:16])) != isp.Addr || binary.BigEndian.Uint16(q[ihl:]) != 67 || !slices.Contains(isp.Servers, srv) {
		p.count("icmp_unreachable_other")
		return
	}
	// Which message: the quoted DHCP message's xid (bytes 4–8) and chaddr
	// (28–34). A router may quote as little as 8 bytes past the IP header
	// (RFC 792; Linux and RFC 1812 routers quote far more): a quote that
	// stops before the chaddr could be about any of the ISP's
	// transactions, or forged, and names none (finding the one xid among
	// up to max_pending transactions would be a scan per ICMP packet from
	// the ISP's segment).
	dhcp := q[ihl+8:]
	if len(dhcp) < 34 {
		p.count("icmp_unreachable_short")
		return
	}
	xid := [4]byte(dhcp[4:8])
	mac := binding.MAC48([6]byte(dhcp[28:34]))
	why := "unreachable"
	switch f[pkt.L4+1] {
	case 3:
		why = "port unreachable: no DHCP server running"
	case 1:
		why = "host unreachable"
	case 0:
		why = "network unreachable"
	case 4:
		// The relayed message was too big for a link on the way (RFC
		// 1191): the server is fine, the path is not.
		why = "fragmentation needed: the relayed message is too big for the path to it"
		if mtu := binary.BigEndian.Uint16(f[pkt.L4+6:]); mtu != 0 { // 0: a router from before RFC 1191
			why += " (MTU " + strconv.Itoa(int(mtu)) + ")"
		}
	case 13:
		why = "administratively prohibited: a filter on the way"
	}
	if !p.tx.noteUnreachable(isp.Index, xid, mac, unreachableNote{at: time.Now(), server: srv, why: why}) {
		// About no transaction pending (ended, or relayed to another
		// server), or forged.
		p.count("icmp_unreachable_no_transaction")
		return
	}
	p.count("server_unreachable")
}

// expireOffers forgets the OFFERs remembered offerMemory ago or more, and
// remakes offered once what it holds has fallen to a quarter of its peak,
// as pending is (shrink): the map of a burst of a million OFFERs,
// forgotten, kept 218 MB of heap for good (200K: 27 MB). It takes them
// from the front of offerQ, in the order they were remembered, and stops
// at the first not due: linear in those forgotten. It walked all of
// offered at every tick under x.mu, which every relayed message and
// answer takes: after an outage's burst, a million OFFERs remembered for
// offerMemory, 5 minutes (BenchmarkExpireOffers, 1M remembered, none
// due: 36.6 ms a tick → 22 ns; 10K: 117 µs → 20 ns). An entry that no
// longer stands for its subscriber's OFFER (forgotten by dropSub, and
// remembered again since with an entry of its own) is passed over; one
// whose OFFER was replaced since is queued again at the later one's time,
// behind later ones: forgotten up to offerMemory late (begin reads its
// age). x.mu held.
func (x *txns) expireOffers(now time.Time) {
	x.offerMem.note(len(x.offered))
	cut := monoNanos(now.Add(-offerMemory))
	for x.offerHead < len(x.offerQ) && x.offerQ[x.offerHead].at <= cut {
		e := x.offerQ[x.offerHead]
		x.offerQ[x.offerHead] = offerAt{}
		x.offerHead++
		o, ok := x.offered[e.sk]
		if !ok || o.q != e.at {
			continue
		}
		if at := monoNanos(o.at); at > cut {
			o.q = at
			x.offered[e.sk] = o
			x.offerQ = append(x.offerQ, offerAt{e.sk, at})
			continue
		}
		delete(x.offered, e.sk)
	}
	if x.offerMem.due(len(x.offered)) {
		x.offered = remade(x.offered)
	}
	// The queue's front moves up into its slice: slide what is left to
	// the start once the front is past half, and give the room of a
	// burst back once it holds a quarter of it.
	if x.offerHead > 0 && x.offerHead >= len(x.offerQ)/2 {
		n := copy(x.offerQ, x.offerQ[x.offerHead:])
		clear(x.offerQ[n:])
		x.offerQ, x.offerHead = x.offerQ[:n], 0
		if c := cap(x.offerQ); c > shrinkFloor && n < c/4 {
			x.offerQ = append(make([]offerAt, 0, 2*n), x.offerQ...)
		}
	}
}
