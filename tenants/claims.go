package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/subscribers"
)

// ClaimLimits bound password guessing through claims. Every attempt is
// counted before any hash is computed. The claimant is the device for the
// portal's claims (its MAC on its circuit), the token for the API's
// (claimant); the operator's own claims (its token, the control socket)
// are not limited. A portal claimant's circuit is where its frames come
// in (its access port and VLAN, ClaimRequest.Circuit): a guesser makes up
// MACs, not circuits. An API claimant is its own circuit (it cannot make
// up claimants: a token is one).
//   - per (customer, claimant) a token bucket (PerPairBurst attempts, one
//     more every PerPairEvery);
//   - per customer, one attempt at a time (a claim for a customer while
//     another one's password is being checked is refused, so concurrent
//     guesses cannot all get in before the first failure counts);
//   - per customer, the claimants that failed for it share one back-off
//     (BackoffBase doubling up to BackoffMax after their consecutive
//     failures): however many devices guess, they guess as one, as fast
//     as a single guesser;
//   - per customer, claimants new to it (no failure for it remembered)
//     are not held by that back-off, but each takes one of the
//     new-claimant tokens of its circuit for that customer
//     (PerCircuitNewBurst, one more every PerCircuitNewEvery) and one of
//     the customer's, across circuits (PerCustomerNewBurst, one more every
//     PerCustomerNewEvery): a guesser that rotates MACs gets a few guesses
//     more per circuit, not one per MAC, and one with many circuits a few
//     more per customer, not a few per circuit;
//   - per claimant, across customers, a bucket of failures (PerMACBurst,
//     one more every PerMACEvery): one device trying a common password
//     against many customer IDs. An attempt takes a token before the
//     check and a successful one gives it back; one naming an ISP that is
//     not configured takes one too (its dummy verify costs a real one's).
//
// No lock-out by one guesser off the owner's circuit: its failures hold
// back the claimants that failed too, never the owner's first attempts
// from its device (a new claimant, or one with fewer than ownTries
// failures of its own, takes new-claimant tokens), an installer's or the
// operator's claim; the new-claimant tokens its made-up MACs spend are
// its circuit's and the customer's, and the customer's outlast one
// circuit's (more of them, coming back faster: keep PerCustomerNew so),
// so the owner's circuit still has both; the owner device's MAC, made up
// on the guesser's circuit, is another claimant there. Until stop 41
// the back-off held every claimant: one wrong guess a minute from any
// device in the walled garden kept a customer's owner out for good (a
// trial); until a review the new-claimant tokens were the customer's
// alone, and one made-up MAC every 6 minutes from anywhere in the garden
// kept them empty. Keeping the owner out now takes new MACs on the
// owner's own circuit faster than its tokens come back (one access shared
// by many subscribers is one circuit: per-subscriber VLANs keep them
// apart), or new MACs on enough circuits to empty the customer's tokens
// (with the defaults, three at their tokens' pace refuse the owner's
// tries at times, four nearly always); the guesses show as claim-refused
// events, the refusals they cause do not.
type ClaimLimits struct {
	PerPairBurst        int
	PerPairEvery        time.Duration
	BackoffBase         time.Duration
	BackoffMax          time.Duration
	PerCircuitNewBurst  int
	PerCircuitNewEvery  time.Duration
	PerCustomerNewBurst int
	PerCustomerNewEvery time.Duration
	PerMACBurst         int
	PerMACEvery         time.Duration
}

// Default claim limits. A circuit's new-claimant tokens are the customer's
// of before circuits counted (10, one more every 6 min); the customer's
// are three circuits' (30, one more every 2 min): a guesser on two
// circuits leaves the owner's a third of them, and one on many adds 30
// guesses, then at most 30 an hour, to the failers' one a minute
// (BackoffMax).
var DefaultClaimLimits = ClaimLimits{PerPairBurst: 5, PerPairEvery: 12 * time.Second, BackoffBase: time.Second, BackoffMax: time.Minute,
	PerCircuitNewBurst: 10, PerCircuitNewEvery: 6 * time.Minute,
	PerCustomerNewBurst: 30, PerCustomerNewEvery: 2 * time.Minute,
	PerMACBurst: 10, PerMACEvery: 30 * time.Second}

type pairKey struct{ isp, customer, mac string }
type custKey struct{ isp, customer string }
type circKey struct{ isp, customer, circuit string }

// pairState is a token bucket.
type pairState struct {
	tokens float64
	last   time.Time
}

// custState is a customer's claim state: its failers' shared back-off,
// its new-claimant tokens across circuits, and whether an attempt is being
// checked.
type custState struct {
	failers  map[string]int // claimants that failed for it, remembered: their own failures
	failures int            // the failers' consecutive failures
	until    time.Time      // no failer's attempt before
	last     time.Time      // its last attempt
	fresh    pairState      // new-claimant tokens, across circuits
	busy     bool           // an attempt's password is being checked
	taken    bool           // it took new-claimant tokens (its circuit's and these)
	// held counts the attempts the customer's own limits (the failers'
	// back-off, the new-claimant tokens) held back since heldSaid, when
	// the last claim-refused event said so.
	held     int
	heldSaid time.Time
}

// heldEvery is how often a customer's claims held back by the limits are
// told its ISP, in one claim-refused event: the guessing a limit holds
// back showed nowhere (stop 41's note), and one event a refusal would let
// a guesser fill the event log.
const heldEvery = time.Minute

// claimLimiter holds the claim limits' state; mu guards it. Old state is
// forgotten (gc) so it stays bounded by the recent attempts.
type claimLimiter struct {
	lim  ClaimLimits
	mu   sync.Mutex
	pair map[pairKey]*pairState
	cust map[custKey]*custState
	circ map[circKey]*pairState // new-claimant tokens per (customer, circuit)
	mac  map[string]*pairState  // failures per claimant, across customers
	gcAt time.Time
}

func newClaimLimiter(l ClaimLimits) *claimLimiter {
	d := DefaultClaimLimits
	if l.PerPairBurst <= 0 {
		l.PerPairBurst = d.PerPairBurst
	}
	if l.PerPairEvery <= 0 {
		l.PerPairEvery = d.PerPairEvery
	}
	if l.BackoffBase <= 0 {
		l.BackoffBase = d.BackoffBase
	}
	if l.BackoffMax <= 0 {
		l.BackoffMax = d.BackoffMax
	}
	if l.PerCircuitNewBurst <= 0 {
		l.PerCircuitNewBurst = d.PerCircuitNewBurst
	}
	if l.PerCircuitNewEvery <= 0 {
		l.PerCircuitNewEvery = d.PerCircuitNewEvery
	}
	if l.PerCustomerNewBurst <= 0 {
		l.PerCustomerNewBurst = d.PerCustomerNewBurst
	}
	if l.PerCustomerNewEvery <= 0 {
		l.PerCustomerNewEvery = d.PerCustomerNewEvery
	}
	if l.PerMACBurst <= 0 {
		l.PerMACBurst = d.PerMACBurst
	}
	if l.PerMACEvery <= 0 {
		l.PerMACEvery = d.PerMACEvery
	}
	return &claimLimiter{lim: l, pair: map[pairKey]*pairState{}, cust: map[custKey]*custState{},
		circ: map[circKey]*pairState{}, mac: map[string]*pairState{}}
}

// busyRetry is the Retry-After of a claim refused because another one for
// the same customer is being checked (a password check takes tens of ms).
const busyRetry = time.Second

// bucketOf returns m's token bucket for k, a full one (burst) if none.
func bucketOf[K comparable](m map[K]*pairState, k K, burst int, now time.Time) *pairState {
	b := m[k]
	if b == nil {
		b = &pairState{tokens: float64(burst), last: now}
		m[k] = b
	}
	return b
}

// refill tops a bucket up for the time since its last change and says
// when it has a token again (nil: it has one now).
func refill(b *pairState, burst int, every time.Duration, now time.Time) error {
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()/every.Seconds())
	b.last = now
	if b.tokens < 1 {
		return &RateLimitError{RetryAfter: time.Duration((1 - b.tokens) * float64(every))}
	}
	return nil
}

// allow takes one attempt for (isp, customer, who) from circuit, or says
// when to retry. An attempt it allows must be ended by result or by
// release.
func (l *claimLimiter) allow(isp, customer, who, circuit string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gc(now)
	ck := custKey{isp, customer}
	c := l.cust[ck]
	if c == nil {
		c = &custState{failers: map[string]int{}, fresh: pairState{tokens: float64(l.lim.PerCustomerNewBurst), last: now}}
		l.cust[ck] = c
	}
	if c.busy {
		return &RateLimitError{RetryAfter: busyRetry, Busy: true}
	}
	own := c.failers[who]
	// A failer waits for the failers' back-off; one with few failures of
	// its own (an owner who mistyped while a guesser holds the back-off
	// up, trying again at every end of it: a review) may take a
	// new-claimant token instead, as a new one does.
	fresh := own == 0 || own < ownTries && now.Before(c.until)
	if !fresh && now.Before(c.until) {
		c.held++
		return &RateLimitError{RetryAfter: c.until.Sub(now)}
	}
	var circ *pairState
	if fresh {
		// Its circuit's tokens and the customer's: a guesser's made-up
		// MACs spend those of the circuit it is on, all circuits'
		// together the customer's (the customer's alone were spent
		// from anywhere in the garden: a review, its owner kept out by
		// one made-up MAC every PerCustomerNewEvery).
		// Looked up, not stored, until a token is taken: a refused
		// attempt (the claimant's own buckets below) left a full
		// bucket behind for an hour, one per customer ID sprayed (a
		// review: 200k refused sprays, 43 MiB, kept).
		circ = l.circ[circKey{isp, customer, circuit}]
		if circ == nil {
			circ = &pairState{tokens: float64(l.lim.PerCircuitNewBurst), last: now}
		}
		if err := longer(refill(circ, l.lim.PerCircuitNewBurst, l.lim.PerCircuitNewEvery, now),
			refill(&c.fresh, l.lim.PerCustomerNewBurst, l.lim.PerCustomerNewEvery, now)); err != nil {
			c.held++
			if own > 0 {
				return &RateLimitError{RetryAfter: min(c.until.Sub(now), err.(*RateLimitError).RetryAfter)}
			}
			return err
		}
	}
	// The claimant's own buckets (a device spraying customer IDs, one
	// claimant hammering one customer) hold its attempts without a word
	// to the customer's ISP: counted per customer, a spray over new IDs
	// wrote one event an attempt (a review).
	m := bucketOf(l.mac, who, l.lim.PerMACBurst, now)
	if err := refill(m, l.lim.PerMACBurst, l.lim.PerMACEvery, now); err != nil {
		return err
	}
	p := bucketOf(l.pair, pairKey{isp, customer, who}, l.lim.PerPairBurst, now)
	if err := refill(p, l.lim.PerPairBurst, l.lim.PerPairEvery, now); err != nil {
		return err
	}
	p.tokens--
	m.tokens-- // given back if the attempt succeeds
	if fresh { // given back if the attempt succeeds
		circ.tokens--
		l.circ[circKey{isp, customer, circuit}] = circ
		c.fresh.tokens--
	}
	c.busy, c.last, c.taken = true, now, fresh
	return nil
}

// spend takes one of the claimant who's failure tokens (PerMACBurst, the
// bucket allow takes from) for an attempt that cannot succeed (a claim
// naming an ISP that is not configured), or says when to retry.
func (l *claimLimiter) spend(who string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gc(now)
	m := bucketOf(l.mac, who, l.lim.PerMACBurst, now)
	if err := refill(m, l.lim.PerMACBurst, l.lim.PerMACEvery, now); err != nil {
		return err
	}
	m.tokens--
	return nil
}

// heldToSay returns how many of the customer's attempts the limits held
// back since the last time it returned any, at most once a heldEvery (0:
// none, or not yet time to say).
func (l *claimLimiter) heldToSay(isp, customer string, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cust[custKey{isp, customer}]
	if c == nil || c.held == 0 || now.Sub(c.heldSaid) < heldEvery {
		return 0
	}
	n := c.held
	c.held, c.heldSaid = 0, now
	return n
}

// ownTries is how many failures of its own a failer may have and still
// take a new-claimant token rather than wait for the failers' back-off.
const ownTries = 3

// result ends an attempt allow allowed with its outcome: a success gives
// the tokens it took back and forgets the claimant's failures (the
// failers' back-off ends with the last of them); a failure makes the
// claimant a failer and lengthens the failers' back-off.
func (l *claimLimiter) result(isp, customer, who, circuit string, ok bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cust[custKey{isp, customer}]
	if c == nil {
		return // forgotten meanwhile (cannot be: busy is kept)
	}
	c.busy = false
	if ok {
		if m := l.mac[who]; m != nil {
			m.tokens = min(float64(l.lim.PerMACBurst), m.tokens+1)
		}
		l.giveBack(c, circKey{isp, customer, circuit})
		delete(c.failers, who)
		if len(c.failers) == 0 {
			c.failures, c.until = 0, time.Time{}
		}
		return
	}
	c.failers[who]++
	c.failures++
	d := l.lim.BackoffBase << min(c.failures-1, 20)
	if d > l.lim.BackoffMax || d <= 0 {
		d = l.lim.BackoffMax
	}
	c.until = now.Add(d)
}

// release ends an attempt allow allowed that checked no password (the
// store failed): no outcome is recorded, the tokens it took are given
// back.
func (l *claimLimiter) release(isp, customer, who, circuit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.cust[custKey{isp, customer}]; c != nil {
		c.busy = false
		l.giveBack(c, circKey{isp, customer, circuit})
	}
	if m := l.mac[who]; m != nil {
		m.tokens = min(float64(l.lim.PerMACBurst), m.tokens+1)
	}
}

// giveBack returns the new-claimant tokens c's attempt took, if it took
// any, to the customer and to k, the attempt's circuit.
func (l *claimLimiter) giveBack(c *custState, k circKey) {
	if !c.taken {
		return
	}
	c.taken = false
	c.fresh.tokens = min(float64(l.lim.PerCustomerNewBurst), c.fresh.tokens+1)
	if b := l.circ[k]; b != nil {
		b.tokens = min(float64(l.lim.PerCircuitNewBurst), b.tokens+1)
	}
}

// longer is the one of two refusals that waits longer (nil: neither
// refuses).
func longer(a, b error) error {
	ra, _ := a.(*RateLimitError)
	rb, _ := b.(*RateLimitError)
	if ra == nil || rb != nil && rb.RetryAfter > ra.RetryAfter {
		return b
	}
	return a
}

// gc forgets, once a minute, what no longer limits anything: a pair's
// bucket once full again, a circuit's new-claimant tokens for a customer
// once all back, a claimant's spray bucket once full again, and
// a customer's state (its failers among it) once its new-claimant tokens
// have all come back and its back-off is long over. A failer is so
// remembered as long as its failures could matter: forgotten sooner, it
// would be new again, with a token of its own.
func (l *claimLimiter) gc(now time.Time) {
	if now.Sub(l.gcAt) < time.Minute {
		return
	}
	l.gcAt = now
	for k, p := range l.pair {
		if now.Sub(p.last) > time.Duration(l.lim.PerPairBurst)*l.lim.PerPairEvery {
			delete(l.pair, k)
		}
	}
	for k, b := range l.circ {
		if now.Sub(b.last) > time.Duration(l.lim.PerCircuitNewBurst)*l.lim.PerCircuitNewEvery {
			delete(l.circ, k)
		}
	}
	keep := max(2*l.lim.BackoffMax, time.Duration(l.lim.PerCustomerNewBurst)*l.lim.PerCustomerNewEvery)
	for k, c := range l.cust {
		if !c.busy && now.Sub(c.last) > keep && now.After(c.until) {
			delete(l.cust, k)
		}
	}
	for k, m := range l.mac {
		if now.Sub(m.last) > time.Duration(l.lim.PerMACBurst)*l.lim.PerMACEvery {
			delete(l.mac, k)
		}
	}
}

// verify checks pw against a stored hash ("" never matches).
func verify(hash, pw string) (ok, rehash bool, err error) {
	if hash == "" {
		auth.DummyVerify(pw)
		return false, false, nil
	}
	return auth.VerifyPassword(hash, pw)
}

// claimant is who a claim's limits count it against: the device itself
// for the portal's (mac, the MAC the datapath saw the request from, on
// circuit, where it saw it: as the DHCP proxy keys a subscriber, so that a
// guesser using the owner device's MAC on its own circuit is another
// claimant, its failures not the owner's), the token (or the control
// socket) for the API's, whose MAC is a parameter the caller chooses (a
// fresh one for every guess would be a fresh claimant).
func claimant(a Actor, mac, circuit string) string {
	if a.Kind == ActorPortal {
		return "mac " + mac + " on " + circuit
	}
	return string(a.Kind) + " " + a.Name
}

// claimCircuit is the circuit whose new-claimant tokens a claim of who
// takes: for the portal's, the one it came in on (circuit, from the
// portal); an API claimant, a token, is its own (ClaimRequest.Circuit is
// not its to name).
func claimCircuit(a Actor, who, circuit string) string {
	if a.Kind == ActorPortal {
		return "circuit " + circuit
	}
	return who
}

// Claim attaches a MAC to a customer given its password. Wrong
// credentials (unknown customer, no password set, wrong password) are one
// generic ErrBadCredentials, after the same hashing work (no timing
// oracle), and a claim-refused event for the ISP.
func (t *Tenants) Claim(ctx context.Context, a Actor, r ClaimRequest) (Device, error) {
	if !t.isps[r.ISP] {
		// A failure of its claimant's, as a wrong password is: the
		// dummy verify is a real one's cost, and uncounted, a claim
		// token's loop of them was unlimited argon2 work. No event:
		// no ISP to tell.
		if a.Kind != ActorOperator {
			if err := t.claims.spend(claimant(a, r.MAC, r.Circuit), time.Now()); err != nil {
				return Device{}, err
			}
		}
		auth.DummyVerify(r.Password)
		return Device{}, ErrBadCredentials
	}
	mac, err := parseMAC(r.MAC)
	if err != nil {
		return Device{}, err
	}
	if len(r.Password) > 1024 || validCustomerID(r.CustomerID) != nil {
		return Device{}, ErrBadCredentials
	}
	now, who := time.Now(), claimant(a, macString(mac), r.Circuit)
	circuit := claimCircuit(a, who, r.Circuit)
	// The operator (its token, the control socket) attaches devices
	// without a password anyway: its claims are not limited, nor held
	// back by a guesser's failures.
	limited := a.Kind != ActorOperator
	if limited {
		if err := t.claims.allow(r.ISP, r.CustomerID, who, circuit, now); err != nil {
			if n := t.claims.heldToSay(r.ISP, r.CustomerID, now); n > 0 {
				why := fmt.Sprintf("claims for this customer held back by the claim limits (someone guessing the password?): %d since the last such event, "+
					"the last from this claimant; the next such event, %s later at the earliest, counts those held back meanwhile", n, heldEvery)
				if _, werr := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{
					event(a, subscribers.EventClaimRefused, r.ISP, r.CustomerID, mac, why)}}); werr != nil {
					t.log.Warn("tenants: claim-refused event not stored", "err", werr)
				}
			}
			return Device{}, err
		}
	}
	settled := !limited
	defer func() {
		if !settled { // the store failed, or a panic: no outcome to record
			t.claims.release(r.ISP, r.CustomerID, who, circuit)
		}
	}()
	c, cerr := t.store.Customer(r.ISP, r.CustomerID)
	var ok, rehash bool
	if cerr != nil {
		if !errors.Is(cerr, subscribers.ErrNotFound) {
			return Device{}, cerr
		}
		auth.DummyVerify(r.Password)
	} else if ok, rehash, err = verify(c.PasswordHash, r.Password); err != nil {
		t.log.Warn("tenants: a customer's stored password hash does not parse", "isp", r.ISP, "customer", r.CustomerID, "err", err)
		ok = false
	}
	if limited {
		t.claims.result(r.ISP, r.CustomerID, who, circuit, ok, time.Now())
	}
	settled = true
	if !ok {
		why := "wrong customer ID or password"
		if cerr == nil && c.Status == string(StatusSuspended) {
			why = "wrong password (customer suspended)"
		}
		if _, err := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{
			event(a, subscribers.EventClaimRefused, r.ISP, r.CustomerID, mac, why)}}); err != nil {
			t.log.Warn("tenants: claim-refused event not stored", "err", err)
		}
		return Device{}, ErrBadCredentials
	}
	// The password was checked against checked, outside the lock (a hash
	// takes tens of ms): the customer the device is attached to must
	// still hold it. A password changed (a leaked one revoked) or the
	// customer deleted and created again meanwhile: the claim is refused.
	checked := c.PasswordHash
	if rehash {
		if h, err := auth.HashPassword(r.Password); err == nil {
			t.mu.Lock()
			if cur, err := t.store.Customer(r.ISP, r.CustomerID); err == nil && cur.PasswordHash == checked {
				cur.PasswordHash, cur.Updated = h, time.Now()
				if _, err := t.apply(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{cur}}); err != nil {
					t.log.Warn("tenants: rehash not stored", "err", err)
				} else {
					checked = h
				}
			}
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err = t.store.Customer(r.ISP, r.CustomerID)
	if err != nil || c.PasswordHash != checked {
		return Device{}, ErrBadCredentials
	}
	if a.Kind == ActorPortal && c.Status == string(StatusSuspended) {
		// Attached, the device would leave the walled garden (or its
		// current ISP) for the silence a suspended customer's devices
		// get; the portal does not lift a suspension.
		if _, err := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{
			event(a, subscribers.EventClaimRefused, r.ISP, r.CustomerID, mac, "customer suspended")}}); err != nil {
			t.log.Warn("tenants: claim-refused event not stored", "err", err)
		}
		return Device{}, ErrSuspended
	}
	// Another ISP's device: only the portal, on the subscriber's own line,
	// takes it with the new ISP's credentials (a move); a claim token
	// cannot (an installer must not move a line it does not stand on).
	// Refused: ErrDeviceTaken, worded for the caller by attachLocked.
	d, err := t.attachLocked(a, c, mac, r.Access, r.Replace, SourceClaim, a.Kind == ActorPortal)
	var dl *DeviceLimitError
	if errors.As(err, &dl) {
		// The ISP hears of its customer trying to add a device over its
		// limit, as of a wrong password (it was told of neither).
		why := fmt.Sprintf("device limit (%d) reached: attached %s", dl.Limit, strings.Join(dl.Devices, ", "))
		if _, werr := t.apply(subscribers.TenantWrite{Events: []subscribers.Event{
			event(a, subscribers.EventClaimRefused, r.ISP, r.CustomerID, mac, why)}}); werr != nil {
			t.log.Warn("tenants: claim-refused event not stored", "err", werr)
		}
	}
	return d, err
}
