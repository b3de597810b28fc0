package dhcpproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// Events come in two kinds.
//
// State changes (bound, renewed, released, declined, expired, revoked,
// nak) are facts: each is written in the same store transaction as the
// change it records (CommitBindingEvent, EndBinding), so the log never
// shows a change that did not happen or misses one that did.
//
// Refusals (unknown, blocked, rejected, timeout, rate-limited) are
// reports about traffic a subscriber can generate at will, so they are
// bounded: folded per (MAC, kind, reason) to one per eventQuiet, and
// recorded at most noiseRate a second (burst noiseBurst) per budget — one
// budget per ISP and one for the refusals that name no ISP (of
// unregistered MACs, and of registered ones refused where they are not
// bound: fromClient says why), so one ISP's noisy
// subscribers cannot hide another ISP's refusals. What a budget holds back
// (and what finds maxEventWriters writes in flight) is counted
// (events_suppressed) and summed up, once a noiseSummary, in a
// "suppressed" event of that budget's ISP and a log line.

// subject is whom an event is about, as far as known.
type subject struct {
	mac      uint64
	isp      string
	customer string
	access   string
}

// event returns a store event about s.
func (s subject) event(kind subscribers.EventKind, ip netip.Addr, reason string) subscribers.Event {
	return subscribers.Event{Time: time.Now(), Kind: kind, MAC: binding.MACBytes(s.mac), ISP: s.isp, IP: ip,
		Reason: reason, Customer: s.customer, Access: s.access}
}

// regSubject is the subject of a registered subscriber seen on c.
func regSubject(mac uint64, c *Circuit, reg registry.Entry) subject {
	return subject{mac: mac, isp: reg.ISP, customer: reg.CustomerID, access: c.Name}
}

// bindingSubject is the subject of a stored binding.
func bindingSubject(b subscribers.Binding) subject {
	return subject{mac: binding.MAC48(b.MAC), isp: b.ISP, customer: b.Customer, access: b.Access}
}

type eventKey struct {
	mac    uint64
	kind   subscribers.EventKind
	reason string
}

// maxEventWriters bounds the refusal events being stored at once.
const maxEventWriters = 256

// eventQuiet is how long a repeated refusal (same MAC, kind and reason)
// is not recorded again (it is still counted).
const eventQuiet = time.Minute

// Refusal budgets: noiseRate events a second, burst noiseBurst, per ISP
// and for the refusals naming no configured ISP; a summary of what was
// held back once a noiseSummary.
const (
	noiseRate, noiseBurst = 10, 50
	noiseSummary          = 10 * time.Second
)

// budget is one refusal budget (an ISP's, or "" for the refusals naming
// no configured ISP: unregistered MACs', registered ones' refused where
// they are not bound, and those of MACs registered at an ISP no longer
// configured).
type budget struct {
	bucket     bucket
	suppressed int
}

// eventNotes owns the refusal folding and budget state; mu guards it and
// is held only inside these methods. writers bounds and tracks the
// background refusal writes.
type eventNotes struct {
	mu          sync.Mutex
	last        map[eventKey]time.Time
	budgets     map[string]*budget
	lastSummary time.Time

	writers sync.WaitGroup
	sem     chan struct{}
}

func (n *eventNotes) init() {
	n.last = map[eventKey]time.Time{}
	n.budgets = map[string]*budget{}
	n.sem = make(chan struct{}, maxEventWriters)
}

// admit decides whether a refusal is recorded: ok, or repeat (folded into
// an earlier one within eventQuiet), or neither (over its budget:
// counted as suppressed). isp names the budget ("" for a refusal naming
// no ISP; the caller maps unknown ISP names to it, so the budgets stay bounded).
func (n *eventNotes) admit(k eventKey, isp string, now time.Time) (ok, repeat bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	last, seen := n.last[k]
	if seen && now.Sub(last) < eventQuiet {
		return false, true
	}
	b := n.budgets[isp]
	if b == nil {
		b = &budget{}
		n.budgets[isp] = b
	}
	if !b.bucket.take(now, noiseRate, noiseBurst) {
		b.suppressed++
		return false, false
	}
	n.last[k] = now
	return true, false
}

// dropped counts a refusal that was admitted but could not be written.
func (n *eventNotes) dropped(isp string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if b := n.budgets[isp]; b != nil {
		b.suppressed++
	}
}

// forget drops the folding state older than eventQuiet.
func (n *eventNotes) forget(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, t := range n.last {
		if now.Sub(t) >= eventQuiet {
			delete(n.last, k)
		}
	}
}

// summary returns, once a noiseSummary, the refusals each budget
// suppressed since the last summary (only budgets with some), and resets
// them.
func (n *eventNotes) summary(now time.Time) map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if now.Sub(n.lastSummary) < noiseSummary {
		return nil
	}
	return n.takeLocked(now)
}

// take returns what summary does, due or not (Run's last summary).
func (n *eventNotes) take(now time.Time) map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.takeLocked(now)
}

// takeLocked returns the refusals each budget suppressed since the last
// summary (only budgets with some) and resets them; n.mu is held.
func (n *eventNotes) takeLocked(now time.Time) map[string]int {
	var out map[string]int
	for isp, b := range n.budgets {
		if b.suppressed > 0 {
			if out == nil {
				out = map[string]int{}
			}
			out[isp] = b.suppressed
			b.suppressed = 0
		}
	}
	n.lastSummary = now
	return out
}

func (n *eventNotes) wait() { n.writers.Wait() }

// budgetOf names the refusal budget of an event about s.
func (p *Proxy) budgetOf(s subject) string {
	if _, ok := p.isps[s.isp]; ok {
		return s.isp
	}
	return ""
}

// refuse records a refusal about s (bounded, see above) and logs it.
func (p *Proxy) refuse(kind subscribers.EventKind, s subject, ip netip.Addr, reason string) {
	if o, ok := refusalOutcome(kind); ok {
		p.outcome(s.isp, o)
	}
	p.note(kind, s, ip, reason)
}

// refuseMisplaced is refuse of a rejected event for where s's MAC was
// seen (OutcomeMisplaced, not OutcomeRejected, for s's ISP).
func (p *Proxy) refuseMisplaced(s subject, reason string) {
	p.outcome(s.isp, OutcomeMisplaced)
	p.note(subscribers.EventRejected, s, netip.Addr{}, reason)
}

// note records the refusal event of kind for s (refuse; alone, without
// an ISP outcome, for a message refused before admission), within its
// budget.
func (p *Proxy) note(kind subscribers.EventKind, s subject, ip netip.Addr, reason string) {
	budget := p.budgetOf(s)
	ok, repeat := p.notes.admit(eventKey{s.mac, kind, reason}, budget, time.Now())
	if !ok {
		if !repeat {
			p.count("events_suppressed")
		}
		return
	}
	e := s.event(kind, ip, reason)
	// Stored off the caller's goroutine: the control plane never waits for
	// an fsync (a flood of refusals must not stall everyone's DHCP), and
	// concurrent events share fsyncs with binding commits (group commit).
	select {
	case p.notes.sem <- struct{}{}:
		p.notes.writers.Add(1)
		go func() {
			defer func() { <-p.notes.sem; p.notes.writers.Done() }()
			if _, err := p.store.AddEvent(e); err != nil {
				p.log.Warn("event not stored", "kind", kind, "err", err)
			}
		}()
	default:
		p.count("events_suppressed")
		p.notes.dropped(budget)
	}
	p.logEvent(e)
}

// summarize writes, once a noiseSummary, a "suppressed" event per budget
// that held refusals back.
func (p *Proxy) summarize(now time.Time) {
	p.writeSummary(now, p.notes.summary(now))
}

// writeSummary writes a "suppressed" event per budget in held: the
// refusals it held back.
func (p *Proxy) writeSummary(now time.Time, held map[string]int) {
	for isp, n := range held {
		// The budget of no ISP holds the refusals of unregistered MACs,
		// of registered MACs refused where they are not bound (a
		// message refused before admission names its ISP only where
		// the MAC is bound: fromClient), and of MACs registered at an
		// ISP no longer configured (budgetOf).
		what := "refusals naming no configured ISP (of unregistered MACs, of registered ones where they are not bound, or at an ISP no longer configured)"
		if isp != "" {
			what = "refusals of ISP " + isp + "'s subscribers"
		}
		e := subscribers.Event{Time: now, Kind: subscribers.EventSuppressed, ISP: isp,
			Reason: fmt.Sprintf("%d %s not recorded (over the event budget of %d/s, burst %d)", n, what, noiseRate, noiseBurst)}
		if _, err := p.store.AddEvent(e); err != nil {
			p.log.Warn("event not stored", "kind", e.Kind, "err", err)
		}
		p.logEvent(e)
	}
}

// logEvent writes the log line of a stored event.
func (p *Proxy) logEvent(e subscribers.Event) {
	lvl := slog.LevelInfo
	switch e.Kind {
	case subscribers.EventRejected, subscribers.EventTimeout, subscribers.EventNak, subscribers.EventUnknown,
		subscribers.EventBlocked, subscribers.EventSuppressed:
		lvl = slog.LevelWarn
	}
	if lvl == slog.LevelInfo && !p.logLimit.allow(time.Now()) {
		return // counted, and told once a second (loglimit.go)
	}
	attrs := []any{"mac", binding.MACString(binding.MAC48(e.MAC)), "isp", e.ISP, "ip", e.IP, "reason", e.Reason}
	if e.Customer != "" {
		attrs = append(attrs, "customer", e.Customer)
	}
	if e.Access != "" {
		attrs = append(attrs, "access", e.Access)
	}
	p.log.Log(context.Background(), lvl, "dhcp "+string(e.Kind), attrs...)
}
