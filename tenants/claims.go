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
// counted before any hash is computed:
//   - per (customer, claimant) a token bucket (PerPairBurst attempts, one
//     more every PerPairEvery) and an exponential back-off after
//     consecutive failures (BackoffBase doubling up to BackoffMax). The
//     claimant is the device for the portal's claims (its MAC), the token
//     for the API's (claimant);
//   - per customer one attempt at a time (a claim for a customer while
//     another one's password is being checked is refused, so concurrent
//     guesses cannot all get in before the first failure counts), and a
//     bucket of failures across claimants (PerCustomerFailBurst, one more
//     every PerCustomerFailEvery): once it is empty, a claimant that has
//     failed for the customer waits for its next token, while one that
//     has not still has its attempt;
//   - per claimant, across customers, a bucket of failures (PerMACBurst,
//     one more every PerMACEvery): one device trying a common password
//     against many customer IDs. An attempt takes a token before the
//     check and a successful one gives it back.
//
// There is no lock-out: whoever guesses a customer ID slows their own
// attempts, not the owner's from another device (the portal's), nor an
// ISP's, an installer's or the operator's claims. Until
// stop 41 the back-off was per customer: one wrong password a minute from
// any device in the walled garden kept a customer's owner from ever
// claiming (a trial). Guessing from many MACs costs a fresh MAC (a garden
// lease) per attempt once the customer's failure bucket is empty.
type ClaimLimits struct {
	PerPairBurst         int
	PerPairEvery         time.Duration
	BackoffBase          time.Duration
	BackoffMax           time.Duration
	PerCustomerFailBurst int
	PerCustomerFailEvery time.Duration
	PerMACBurst          int
	PerMACEvery          time.Duration
}

// Default claim limits.
var DefaultClaimLimits = ClaimLimits{PerPairBurst: 5, PerPairEvery: 12 * time.Second, BackoffBase: time.Second, BackoffMax: time.Minute,
	PerCustomerFailBurst: 20, PerCustomerFailEvery: 3 * time.Minute,
	PerMACBurst: 10, PerMACEvery: 30 * time.Second}

type pairKey struct{ isp, customer, mac string }
type custKey struct{ isp, customer string }

// pairState is a token bucket; for a (customer, MAC) pair also its
// consecutive failures and the back-off they set.
type pairState struct {
	tokens   float64
	last     time.Time
	failures int
	until    time.Time // no attempt before
}

type custState struct {
	fails pairState // the customer's failure bucket
	busy  bool      // an attempt's password is being checked
}

// claimLimiter holds the claim limits' state; mu guards it. Old state is
// forgotten (gc) so it stays bounded by the recent attempts.
type claimLimiter struct {
	lim  ClaimLimits
	mu   sync.Mutex
	pair map[pairKey]*pairState
	cust map[custKey]*custState
	mac  map[string]*pairState // failures per MAC, across customers
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
	if l.PerCustomerFailBurst <= 0 {
		l.PerCustomerFailBurst = d.PerCustomerFailBurst
	}
	if l.PerCustomerFailEvery <= 0 {
		l.PerCustomerFailEvery = d.PerCustomerFailEvery
	}
	if l.PerMACBurst <= 0 {
		l.PerMACBurst = d.PerMACBurst
	}
	if l.PerMACEvery <= 0 {
		l.PerMACEvery = d.PerMACEvery
	}
	return &claimLimiter{lim: l, pair: map[pairKey]*pairState{}, cust: map[custKey]*custState{}, mac: map[string]*pairState{}}
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

// allow takes one attempt for (isp, customer, mac), or says when to retry.
// An attempt it allows must be ended by result or by release.
func (l *claimLimiter) allow(isp, customer, mac string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gc(now)
	ck := custKey{isp, customer}
	pk := pairKey{isp, customer, mac}
	p := l.pair[pk]
	if p != nil && now.Before(p.until) {
		return &RateLimitError{RetryAfter: p.until.Sub(now)}
	}
	c := l.cust[ck]
	if c != nil && c.busy {
		return &RateLimitError{RetryAfter: busyRetry, Busy: true}
	}
	if c != nil && p != nil && p.failures > 0 {
		// Failed for this customer before: its attempts count against
		// the customer's failure bucket too (a MAC that never failed
		// for it still has its attempt: the owner's device).
		if err := refill(&c.fails, l.lim.PerCustomerFailBurst, l.lim.PerCustomerFailEvery, now); err != nil {
			return err
		}
	}
	m := bucketOf(l.mac, mac, l.lim.PerMACBurst, now)
	if err := refill(m, l.lim.PerMACBurst, l.lim.PerMACEvery, now); err != nil {
		return err
	}
	p = bucketOf(l.pair, pk, l.lim.PerPairBurst, now)
	if err := refill(p, l.lim.PerPairBurst, l.lim.PerPairEvery, now); err != nil {
		return err
	}
	p.tokens--
	m.tokens-- // given back if the attempt succeeds
	if c == nil {
		c = &custState{fails: pairState{tokens: float64(l.lim.PerCustomerFailBurst), last: now}}
		l.cust[ck] = c
	}
	c.busy = true
	return nil
}

// result ends an attempt allow allowed with its outcome: a success clears
// the pair's back-off and gives the MAC's token back, a failure lengthens
// the pair's back-off and takes one of the customer's failure tokens.
func (l *claimLimiter) result(isp, customer, mac string, ok bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ck := custKey{isp, customer}
	c := l.cust[ck]
	if c != nil {
		c.busy = false
	}
	p := bucketOf(l.pair, pairKey{isp, customer, mac}, l.lim.PerPairBurst, now)
	if ok {
		p.failures, p.until = 0, time.Time{}
		if m := l.mac[mac]; m != nil {
			m.tokens = min(float64(l.lim.PerMACBurst), m.tokens+1)
		}
		return
	}
	if c == nil {
		c = &custState{fails: pairState{tokens: float64(l.lim.PerCustomerFailBurst), last: now}}
		l.cust[ck] = c
	}
	_ = refill(&c.fails, l.lim.PerCustomerFailBurst, l.lim.PerCustomerFailEvery, now)
	c.fails.tokens = max(c.fails.tokens-1, -float64(l.lim.PerCustomerFailBurst))
	p.failures++
	d := l.lim.BackoffBase << min(p.failures-1, 20)
	if d > l.lim.BackoffMax || d <= 0 {
		d = l.lim.BackoffMax
	}
	p.until, p.last = now.Add(d), now
}

// release ends an attempt allow allowed that checked no password (the
// store failed): no outcome is recorded, the MAC's token is given back.
func (l *claimLimiter) release(isp, customer, mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.cust[custKey{isp, customer}]; c != nil {
		c.busy = false
	}
	if m := l.mac[mac]; m != nil {
		m.tokens = min(float64(l.lim.PerMACBurst), m.tokens+1)
	}
}

func (l *claimLimiter) gc(now time.Time) {
	if now.Sub(l.gcAt) < time.Minute {
		return
	}
	l.gcAt = now
	for k, p := range l.pair {
		if now.Sub(p.last) > max(time.Duration(l.lim.PerPairBurst)*l.lim.PerPairEvery, 2*l.lim.BackoffMax) && now.After(p.until) {
			delete(l.pair, k)
		}
	}
	for k, c := range l.cust {
		if !c.busy && now.Sub(c.fails.last) > time.Duration(l.lim.PerCustomerFailBurst+1)*l.lim.PerCustomerFailEvery {
			delete(l.cust, k)
		}
	}
	for k, m := range l.mac {
		if now.Sub(m.last) > time.Duration(l.lim.PerMACBurst)*l.lim.PerMACEvery {
			delete(l.mac, k)
		}
	}
}

// claimant is who a claim's limits count it against: the device itself
// for the portal's (mac, the MAC the datapath saw the request from), the
// token (or the control socket) for the API's, whose MAC is a parameter
// the caller chooses (a fresh one for every guess would be a fresh
// claimant).
func claimant(a Actor, mac string) string {
	if a.Kind == ActorPortal {
		return "mac " + mac
	}
	return string(a.Kind) + " " + a.Name
}

// verify checks pw against a stored hash ("" never matches).
func verify(hash, pw string) (ok, rehash bool, err error) {
	if hash == "" {
		auth.DummyVerify(pw)
		return false, false, nil
	}
	return auth.VerifyPassword(hash, pw)
}

// Claim attaches a MAC to a customer given its password. Wrong
// credentials (unknown customer, no password set, wrong password) are one
// generic ErrBadCredentials, after the same hashing work (no timing
// oracle), and a claim-refused event for the ISP.
func (t *Tenants) Claim(ctx context.Context, a Actor, r ClaimRequest) (Device, error) {
	if !t.isps[r.ISP] {
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
	now, who := time.Now(), claimant(a, macString(mac))
	if err := t.claims.allow(r.ISP, r.CustomerID, who, now); err != nil {
		return Device{}, err
	}
	settled := false
	defer func() {
		if !settled { // the store failed, or a panic: no outcome to record
			t.claims.release(r.ISP, r.CustomerID, who)
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
	t.claims.result(r.ISP, r.CustomerID, who, ok, time.Now())
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
