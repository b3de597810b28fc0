package dhcpproxy

import (
	"net/netip"
	"time"
)

// The notes the relay makes on a pending transaction as its exchange goes
// on, and reads back: each under txns.mu, which guards a txn's mutable
// fields (txn).

// informed notes that t's INFORM came from a (txn.informFrom).
func (x *txns) informed(t *txn, a netip.Addr) {
	x.mu.Lock()
	t.informFrom = a
	x.mu.Unlock()
}

// informFrom returns the address t's INFORM came from (invalid: unknown).
func (x *txns) informFrom(t *txn) netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.informFrom
}

// clientSideOf is what t's client is owed in a reply (relayDownTo).
func (x *txns) clientSideOf(t *txn) *clientSide {
	x.mu.Lock()
	defer x.mu.Unlock()
	return &clientSide{flags: t.flags, clientID: t.clientID, ciaddr: t.ciaddr}
}

// refuse notes that an answer to t was refused (see txn.refused).
func (x *txns) refuse(t *txn) {
	x.mu.Lock()
	t.refused = true
	x.mu.Unlock()
}

// nak notes that server from answered t's DISCOVER with a NAK.
func (x *txns) nak(t *txn, from netip.Addr) {
	x.mu.Lock()
	if !t.nakBy.IsValid() {
		t.nakBy = from
	}
	x.mu.Unlock()
}

// flushedBefore records that the subscriber's intents to t's ISP up to
// ID upTo were queued before t's message was relayed.
func (x *txns) flushedBefore(t *txn, upTo uint64) {
	if t == nil {
		return
	}
	x.mu.Lock()
	t.intentsBefore = max(t.intentsBefore, upTo)
	x.mu.Unlock()
}

// intentsBeforeOf is t's intentsBefore.
func (x *txns) intentsBeforeOf(t *txn) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.intentsBefore
}

// extend moves t's deadline to at least until.
func (x *txns) extend(t *txn, until time.Time) {
	if t == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if t.deadline.Before(until) {
		t.deadline = until // later: its entry comes up early (txndue.go)
	}
}

// chosen returns the address of the server whose OFFER t took (invalid if
// none).
func (x *txns) chosen(t *txn) netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.offerFrom
}

// requestedOf returns the address t's client asks for (txn.requested).
func (x *txns) requestedOf(t *txn) netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.requested
}

// serverID returns t's ISP server identifier (from its OFFER).
func (x *txns) serverID(t *txn) netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.serverID
}

// relayedTo notes that t's message is relayed to the server only, or to
// every server of its ISP when only is not valid (as sendRelay sends it),
// and whether it is a renewal sent to every server before the ISP's T2
// (txn.early).
func (x *txns) relayedTo(t *txn, only netip.Addr, early bool) {
	x.mu.Lock()
	t.sentTo, t.early = only, early
	x.mu.Unlock()
}

// earlyOf reports whether t is a renewal sent to every server before the
// ISP's T2 (txn.early).
func (x *txns) earlyOf(t *txn) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.early
}

// noteOtherNak notes on t the NAK of server from, not acted on
// (txn.otherNak).
func (x *txns) noteOtherNak(t *txn, from netip.Addr) {
	x.mu.Lock()
	t.otherNak = from
	x.mu.Unlock()
}

// noteRenewal sets (or, with nil, clears) t's renewal note.
func (x *txns) noteRenewal(t *txn, rn *renewNote) {
	x.mu.Lock()
	t.renew = rn
	x.mu.Unlock()
}
