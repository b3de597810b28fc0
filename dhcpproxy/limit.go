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
	mu      sync.Mutex
	cfg     *Config // the rates and bursts (read at each call)
	mac     map[uint64]*bucket
	circuit map[circuitKey]*bucket
}

func (l *limiter) init(cfg *Config) {
	l.cfg = cfg
	l.mac = map[uint64]*bucket{}
	l.circuit = map[circuitKey]*bucket{}
}

// allow applies the per-MAC and then the per-circuit limit: a subscriber
// over its own limit does not spend the circuit's shared budget. Callers
// admit the MAC (registered, not blocked) first, so the per-MAC state is
// bounded by the registry.
//
// It returns "" when the message may go on, else which limit refused it:
// "mac" (this subscriber) or "circuit" (its access circuit as a whole).
func (l *limiter) allow(sk subKey, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	mb := l.mac[sk.mac]
	if mb == nil {
		mb = &bucket{}
		l.mac[sk.mac] = mb
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
	for mac, b := range l.mac {
		if b.full(now, l.cfg.MACRate, l.cfg.MACBurst) {
			delete(l.mac, mac)
		}
	}
}
