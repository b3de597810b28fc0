package dhcpproxy

import "time"

// bucket is a token bucket: rate tokens per second up to burst.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst int) bool {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
	}
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket has refilled (it can be forgotten).
func (b *bucket) full(now time.Time, rate, burst int) bool {
	return b.tokens+now.Sub(b.last).Seconds()*float64(rate) >= float64(burst)
}

// allow applies the per-MAC and then the per-circuit limit: a subscriber
// over its own limit does not spend the circuit's shared budget. Callers
// admit the MAC (registered, not blocked) first, so the per-MAC state is
// bounded by the registry.
//
// Preconditions: p.mu held.
// It returns "" when the message may go on, else which limit refused it:
// "mac" (this subscriber) or "circuit" (its access circuit as a whole).
func (p *Proxy) allow(sk subKey, now time.Time) string {
	mb := p.macBucket[sk.mac]
	if mb == nil {
		mb = &bucket{}
		p.macBucket[sk.mac] = mb
	}
	if !mb.take(now, p.cfg.MACRate, p.cfg.MACBurst) {
		return "mac"
	}
	cb := p.cirBucket[sk.circuit]
	if cb == nil {
		cb = &bucket{}
		p.cirBucket[sk.circuit] = cb
	}
	if !cb.take(now, p.cfg.CircuitRate, p.cfg.CircuitBurst) {
		return "circuit"
	}
	return ""
}
