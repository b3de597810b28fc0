package dhcpproxy

import (
	"time"

	"github.com/ispmux/ispmux/internal/binding"
)

// The lapsed holder of an ACK's address. A lease that ran out holds its
// address in the tables until the expiry tick ends it, and in a mass
// expiry (an area's power cut: 100k–1M leases running out together) the
// tick ends 4096 a tick, the last tens of seconds late. The ISP's server
// may give the address to another subscriber meanwhile, rightly: its
// lease is over. That subscriber's ACK is not refused as bind_conflict
// then: the holder's binding is ended first, as the tick would end it
// (its expired event, only if it still holds that version of the lease,
// run out), and the ACK decided again (bindAndAck's passes). A holder
// whose lease has not run out keeps its address: the ACK is refused
// (bind_conflict), whatever the asker sent.
//
// The same holds for the client identifier rule (clientids.go): a
// binding whose lease ran out holds its identifier in the index until
// the tick ends it, and is no obstacle either. The relay's check
// (checkClientID) and the ACK's (ackClientID) end it as the tick would
// (its expired event, nothing told to the ISP: its lease ran out there
// too; client_id_lapsed), not refuse the asker (client_id_taken,
// ack_client_id_taken) nor revoke it with a RELEASE (a reclaim,
// client_id_reclaimed, bounded by mayReclaim), and decide again. A
// holder whose lease is live meets the rule as before.

// lapsedHolder is the binding of holder, the DHCP subscriber the tables
// say holds an ACK's address, if its lease ran out (expires ≤ now) at
// that address: read without its stripe, checked again under it
// (endLapsedHolder).
func (p *Proxy) lapsedHolder(holder binding.Binding) (held, bool) {
	sk := holderKey(holder)
	l, ok := p.leases.get(sk)
	if !ok || l.isp != holder.ISP || l.addr() != holder.IP || l.endsAfter(time.Now()) {
		return held{}, false
	}
	return held{sk, l}, true
}

// endLapsedHolder ends h, a lapsed holder (lapsedHolder: of an ACK's
// address; or of the asker's client identifier, lapsedCID) with its
// expired event, as the expiry tick would, if its subscriber still holds
// that version of the lease and it has run out (a renewal committed
// meanwhile stays: expiry_superseded), with h's stripe of subMu held and
// no other; counted as expired and as what (bind_conflict_lapsed,
// client_id_lapsed). It reports whether h still holds that lease, not
// ended: the store refused (logged), and the asker is refused, its
// rejected event saying so (bindOnce's and ackClientID's unended; at the
// relay, its message is not relayed). Ended meanwhile (by the tick), the
// next pass finds the address or identifier free; renewed, it meets the
// rule of a live holder.
func (p *Proxy) endLapsedHolder(h held, what string) bool {
	defer p.lockSub(h.k.mac).Unlock()
	l, ok := p.leases.get(h.k)
	if !ok {
		return false // ended meanwhile (the tick): the address is free
	}
	if !l.same(&h.l) || l.expires != h.l.expires || l.endsAfter(time.Now()) {
		p.count("expiry_superseded")
		return false
	}
	h.l = l // its flags as they are now (leaseUnanswered)
	if !p.endExpiredLocked(h) {
		return true // the store refused (logged)
	}
	p.count("expired")
	p.count(what)
	return false
}

// lapsedCID reports whether h, the binding clientIDHolder found holding
// an asker's client identifier, has run out (expires ≤ now), the expiry
// tick not having ended it yet: read without its stripe, checked again
// under it (endLapsedHolder).
func lapsedCID(h held) bool { return !h.l.endsAfter(time.Now()) }

// isUnended reports whether holder, the tables' holder of an ACK's
// address, is unended (the lapsed holder whose end the store refused at
// an earlier pass: endLapsedHolder) and still holds that lease.
func (p *Proxy) isUnended(holder binding.Binding, unended held) bool {
	sk := holderKey(holder)
	l, ok := p.leases.get(sk)
	return ok && held{sk, l}.is(unended)
}

// holderKey is the lease-table key of holder, a DHCP subscriber the
// tables say holds an address (its access circuit and MAC): what
// lapsedHolder and isUnended look it up by, the same key for the same
// holder in bindOnce's one pass.
func holderKey(holder binding.Binding) subKey {
	return subKey{circuitKey{holder.Port, holder.VLAN}, holder.MAC}
}
