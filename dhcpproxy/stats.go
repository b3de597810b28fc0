package dhcpproxy

import (
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/internal/histo"
	"github.com/ispmux/ispmux/subscribers"
)

// Per-ISP statistics, read by package metrics at scrape time. They are
// kept where the proxy already counts (the control plane, never the
// datapath): an atomic add, and a histogram observation on an ISP's answer.

// Outcome is what became of a subscriber's DHCP message, counted per ISP.
type Outcome uint8

// Outcomes.
const (
	// OutcomeOffer: the ISP's OFFER was passed on.
	OutcomeOffer Outcome = iota
	// OutcomeAck: a lease was bound or renewed and the ACK delivered.
	OutcomeAck
	// OutcomeNak: the ISP's NAK was passed on.
	OutcomeNak
	// OutcomeTimeout: the ISP did not answer within [dhcp] timeout.
	OutcomeTimeout
	// OutcomeRejected: refused by ispmux for a reason its event gives
	// (suspended, wrong circuit, an unusable or conflicting address, the
	// ISP unreachable, ...).
	OutcomeRejected
	// OutcomeBlocked: the subscriber is blocked.
	OutcomeBlocked
	// OutcomeRateLimited: over the per-MAC or per-circuit rate limit.
	OutcomeRateLimited
	// OutcomeMisplaced: refused by ispmux because of where the MAC was
	// seen (refuseMisplaced): on an access its registration does not
	// allow, or while the MAC is bound or onboarding on another access.
	// A clone of a customer's MAC elsewhere (or the device moved
	// between circuits) says nothing of the ISP: counted apart from
	// rejected, so that a refusal ratio per ISP does not blame it.
	OutcomeMisplaced
	// NumOutcomes is the number of outcomes.
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"offer", "ack", "nak", "timeout", "rejected", "blocked", "rate_limited", "misplaced"}

func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// refusalOutcome maps a refusal event's kind to its outcome (false: not
// counted per ISP).
func refusalOutcome(k subscribers.EventKind) (Outcome, bool) {
	switch k {
	case subscribers.EventTimeout:
		return OutcomeTimeout, true
	case subscribers.EventRejected:
		return OutcomeRejected, true
	case subscribers.EventBlocked:
		return OutcomeBlocked, true
	case subscribers.EventRateLimited:
		return OutcomeRateLimited, true
	}
	return 0, false
}

// ispStats are one ISP's counters.
type ispStats struct {
	relayed  atomic.Uint64
	outcomes [NumOutcomes]atomic.Uint64
	// answer: from the first relay of a message to the ISP's answer
	// (OFFER, ACK, NAK). requestAck: from the subscriber's REQUEST to
	// the ACK delivered (the ISP, the durable commit and the install).
	answer, requestAck histo.Histogram
}

// ispStat returns the statistics of ISP index i, created on first use.
func (p *Proxy) ispStat(i uint8) *ispStats {
	if s := p.stats[i].Load(); s != nil {
		return s
	}
	p.stats[i].CompareAndSwap(nil, new(ispStats))
	return p.stats[i].Load()
}

// outcome counts an outcome for the ISP named isp (nothing for a name that
// is no configured ISP: an unregistered subscriber has none).
func (p *Proxy) outcome(isp string, o Outcome) {
	if x, ok := p.isps[isp]; ok {
		p.ispStat(x.Index).outcomes[o].Add(1)
	}
}

// ISPCounters is one ISP's DHCP statistics.
type ISPCounters struct {
	Index uint8
	Name  string
	// Relayed counts the subscribers' messages relayed to the ISP's
	// servers (DISCOVER, REQUEST, INFORM; retransmissions included).
	Relayed uint64
	// Outcomes counts by [Outcome].
	Outcomes [NumOutcomes]uint64
	// Answer is the time from relaying a message to the ISP's answer;
	// RequestAck from a subscriber's REQUEST to its ACK delivered.
	Answer, RequestAck histo.Snapshot
}

// ISPCounters returns the statistics of every configured ISP, in the
// order of Config.ISPs.
func (p *Proxy) ISPCounters() []ISPCounters {
	out := make([]ISPCounters, len(p.cfg.ISPs))
	for i := range p.cfg.ISPs {
		isp := &p.cfg.ISPs[i]
		c := &out[i]
		c.Index, c.Name = isp.Index, isp.Name
		s := p.stats[isp.Index].Load()
		if s == nil {
			continue
		}
		c.Relayed = s.relayed.Load()
		for o := range s.outcomes {
			c.Outcomes[o] = s.outcomes[o].Load()
		}
		c.Answer, c.RequestAck = s.answer.Snapshot(), s.requestAck.Snapshot()
	}
	return out
}

// PendingTransactions is the number of transactions waiting for an ISP.
func (p *Proxy) PendingTransactions() int {
	p.tx.mu.Lock()
	defer p.tx.mu.Unlock()
	return len(p.tx.pending)
}

// LeasesPerISP returns the number of DHCP leases held, by ISP index:
// O(ISPs), counted as leases come and go (a scrape never walks them).
func (p *Proxy) LeasesPerISP() map[uint8]int {
	out := map[uint8]int{}
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	for i, n := range p.leases.perISP {
		if n > 0 {
			out[uint8(i)] = n
		}
	}
	return out
}

// LeasesByISP is LeasesPerISP keyed by ISP name (package tenants: the
// bindings column of the ISP list, without reading the store).
func (p *Proxy) LeasesByISP() map[string]int {
	out := map[string]int{}
	for i, n := range p.LeasesPerISP() {
		if isp := p.ispAt[i]; isp != nil {
			out[isp.Name] = n
		}
	}
	return out
}

// relayedAt returns when t's current message was first relayed.
func (x *txns) relayedAt(t *txn) time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	return t.relayed
}

// answered records the ISP's answer to t (the time since its relay).
func (p *Proxy) answered(isp *ISP, t *txn) {
	if at := p.tx.relayedAt(t); !at.IsZero() {
		p.ispStat(isp.Index).answer.Since(at)
	}
}
