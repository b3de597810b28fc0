package dhcpproxy

import (
	"sync"
	"time"
)

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

// limiter owns the per-MAC and per-circuit token buckets; mu guards them
// and is held only inside these methods.
type limiter struct {
	mu  sync.Mutex
	cfg *Config // the rates and bursts (read at each call)
	// mac holds a MAC's bucket on each circuit it is heard on: messages
	// with its MAC on another circuit (a device there forging it) spend
	// none of the budget of the device on its own, whose renewals there
	// keep its binding (endOtherCircuits) and must not be rate-limited
	// by someone else's flood.
	mac     map[subKey]*bucket
	circuit map[circuitKey]*bucket
}

func (l *limiter) init(cfg *Config) {
	l.cfg = cfg
	l.mac = map[subKey]*bucket{}
	l.circuit = map[circuitKey]*bucket{}
}

// allow applies the per-MAC (on its circuit) and then the per-circuit
// limit: a subscriber over its own limit does not spend the circuit's
// shared budget. Callers admit the MAC (registered, not blocked) first,
// so the per-MAC state is bounded by the registry times the circuits a
// MAC is sent on, and forget drops it once refilled.
//
// It returns "" when the message may go on, else which limit refused it:
// "mac" (this subscriber) or "circuit" (its access circuit as a whole).
func (l *limiter) allow(sk subKey, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	mb := l.mac[sk]
	if mb == nil {
		mb = &bucket{}
		l.mac[sk] = mb
	}
	if !mb.take(now, l.cfg.MACRate, l.cfg.MACBurst) {
		return "mac"
	}
	cb := l.circuit[sk.circuit]
	if cb == nil {
		cb = &bucket{}
		l.circuit[sk.circuit] = cb
	}
	if !cb.take(now, l.cfg.CircuitRate, l.cfg.CircuitBurst) {
		return "circuit"
	}
	return ""
}

// forget drops the per-MAC buckets that have refilled (they hold nothing).
func (l *limiter) forget(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for sk, b := range l.mac {
		if b.full(now, l.cfg.MACRate, l.cfg.MACBurst) {
			delete(l.mac, sk)
		}
	}
}
