package tenants

import (
	"fmt"
	"sync"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// Refused attaches of another ISP's device (attach-refused events) are
// reports a caller makes at will: an ISP's script retrying an attach, or
// walking a list of MACs, a claim token with good credentials. The event
// log is trimmed by count, so one event per request let a flood push
// every other event (other ISPs' included) out of it, and cost a commit
// each under the writer lock. They are bounded per actor (token), as the
// DHCP path's refusals are per ISP: a repeat of an actor's refusal of
// the same MAC within refusalQuiet of the recorded one is folded into
// it, and an actor records at most refusalBurst, then one more every
// refusalEvery. What is not recorded is counted and summed up, at most
// refusalSummary after the first of it, in a "suppressed" event of no ISP
// (the operator's log only) whose actor is the token and whose reason
// starts with the count. A flood's request ids are then not all in the
// log: the operator finds the MAC's recorded refusal by that token.
const (
	refusalQuiet   = time.Minute
	refusalBurst   = 20
	refusalEvery   = 6 * time.Second
	refusalSummary = time.Minute
)

type refusalKey struct {
	actor string
	mac   subscribers.MAC
}

// refusalNotes is the refusals' folding and budget state; mu guards it
// and is held only inside its methods.
type refusalNotes struct {
	mu         sync.Mutex
	last       map[refusalKey]time.Time // an actor's last recorded refusal of a MAC
	budget     map[string]*pairState    // per actor: refusalBurst, one more every refusalEvery
	unrecorded map[string]int           // per actor, since the last summary
	armed      bool                     // a summary is due
	timer      *time.Timer              // the due summary's, until it fires or close stops it
	closed     bool                     // close ran: nothing more is scheduled
	gcAt       time.Time
}

func newRefusalNotes() *refusalNotes {
	return &refusalNotes{last: map[refusalKey]time.Time{}, budget: map[string]*pairState{}, unrecorded: map[string]int{}}
}

// admit says whether a refusal of k at now is recorded; if not, it is
// counted, and arm says it is the first counted since the last summary
// (the caller schedules one).
func (n *refusalNotes) admit(k refusalKey, now time.Time) (record, arm bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gc(now)
	if last, ok := n.last[k]; ok && now.Sub(last) < refusalQuiet {
		return false, n.count(k.actor)
	}
	b := bucketOf(n.budget, k.actor, refusalBurst, now)
	if refill(b, refusalBurst, refusalEvery, now) != nil {
		return false, n.count(k.actor)
	}
	b.tokens--
	n.last[k] = now
	return true, false
}

// count counts a refusal of actor not recorded; it reports whether a
// summary must be scheduled (n.mu held).
func (n *refusalNotes) count(actor string) (arm bool) {
	n.unrecorded[actor]++
	arm, n.armed = !n.armed, true
	return arm
}

// schedule arms the summary's timer to run fn after refusalSummary,
// unless close ran.
func (n *refusalNotes) schedule(fn func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.timer = time.AfterFunc(refusalSummary, fn)
	}
}

// close stops the due summary's timer and schedules no more: the caller
// writes what is counted itself (Tenants.Close).
func (n *refusalNotes) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	if n.timer != nil {
		n.timer.Stop()
	}
}

// take returns the refusals not recorded per actor since the last call,
// and forgets them.
func (n *refusalNotes) take() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.unrecorded
	n.unrecorded, n.armed = map[string]int{}, false
	return out
}

// gc forgets, once a refusalQuiet, the folding state older than it and
// the budgets that are full again (n.mu held): the state is bounded by
// what the budgets recorded recently.
func (n *refusalNotes) gc(now time.Time) {
	if now.Sub(n.gcAt) < refusalQuiet {
		return
	}
	n.gcAt = now
	for k, t := range n.last {
		if now.Sub(t) >= refusalQuiet {
			delete(n.last, k)
		}
	}
	for a, b := range n.budget {
		if now.Sub(b.last) > refusalBurst*refusalEvery {
			delete(n.budget, a)
		}
	}
}

// noteRefusal stores an attach-refused event unless its actor's budget
// holds it back (see refusalNotes).
func (t *Tenants) noteRefusal(e subscribers.Event) {
	record, arm := t.refusals.admit(refusalKey{e.Actor, e.MAC}, e.Time)
	if arm {
		t.refusals.schedule(t.summarizeRefusals)
	}
	if !record {
		return
	}
	if _, err := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{e}}); err != nil {
		t.log.Warn("tenants: attach-refused event not stored", "err", err)
	}
}

// summarizeRefusals writes a suppressed event, of no ISP, per actor whose
// refusals were held back since the last summary.
func (t *Tenants) summarizeRefusals() {
	for actor, n := range t.refusals.take() {
		why := fmt.Sprintf("%d attach refusals by %s not recorded (repeats within %s of a recorded one, or over the budget of %d, one more every %s)",
			n, actor, refusalQuiet, refusalBurst, refusalEvery)
		e := subscribers.Event{Time: time.Now(), Kind: subscribers.EventSuppressed, Actor: actor, Reason: why}
		if _, err := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{e}}); err != nil {
			t.log.Warn("tenants: suppressed event not stored", "err", err)
		}
		t.log.Warn("tenants: attach refusals not recorded", "actor", actor, "count", n)
	}
}

// Close writes the summary of the refusals not recorded yet, which would
// otherwise be lost with the process (the summary is written up to
// refusalSummary after the first of them), and schedules no more. Called
// at shutdown, once the API and the portal have stopped and before the
// store closes; the Tenants are not used after it.
func (t *Tenants) Close() {
	t.refusals.close()
	t.summarizeRefusals()
}
