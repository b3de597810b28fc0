package dhcpproxy

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

type eventKey struct {
	mac  uint64
	kind subscribers.EventKind
}

// maxEventWriters bounds the events being stored at once.
const maxEventWriters = 256

// eventQuiet is how long a repeated rejection of one subscriber is not
// recorded again (it is still counted).
const eventQuiet = time.Minute

// Refusals (unknown, blocked, rejected, timeout, rate-limited) are recorded
// and logged at most noiseRate a second (burst noiseBurst) in all: a flood
// of made-up MACs must not flood the log and the store. Beyond that they
// are counted (events_suppressed) and summed up in one log line a
// noiseSummary.
const (
	noiseRate, noiseBurst = 10, 50
	noiseSummary          = 10 * time.Second
)

func isNoise(kind subscribers.EventKind) bool {
	switch kind {
	case subscribers.EventUnknown, subscribers.EventBlocked, subscribers.EventTimeout, subscribers.EventRejected, subscribers.EventRateLimited:
		return true
	}
	return false
}

// eventNotes owns the refusal-event budget and folding state; mu guards
// it and is held only inside these methods. writers bounds and tracks the
// background event writes.
type eventNotes struct {
	mu sync.Mutex
	// last suppresses repeats of the same rejection for one MAC (a
	// client retransmits every few seconds): one event per eventQuiet.
	last map[eventKey]time.Time
	// noise limits refusal events in all; suppressed counts those it
	// held back since the last summary line, at lastSummary.
	noise       bucket
	suppressed  int
	lastSummary time.Time

	writers sync.WaitGroup
	sem     chan struct{}
}

func (n *eventNotes) init() {
	n.last = map[eventKey]time.Time{}
	n.sem = make(chan struct{}, maxEventWriters)
}

// admit decides whether a refusal is recorded: ok, or repeat (folded into
// an earlier one within eventQuiet), or neither (over the budget).
func (n *eventNotes) admit(k eventKey, now time.Time) (ok, repeat bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	last, seen := n.last[k]
	repeat = seen && now.Sub(last) < eventQuiet
	ok = !repeat && n.noise.take(now, noiseRate, noiseBurst)
	if ok {
		n.last[k] = now
	} else if !repeat {
		n.suppressed++
	}
	return ok, repeat
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

// summary returns the refusals suppressed since the last summary, once a
// noiseSummary.
func (n *eventNotes) summary(now time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := 0
	if n.suppressed > 0 && now.Sub(n.lastSummary) >= noiseSummary {
		s, n.suppressed, n.lastSummary = n.suppressed, 0, now
	}
	return s
}

func (n *eventNotes) wait() { n.writers.Wait() }

func (p *Proxy) event(kind subscribers.EventKind, mac uint64, isp string, ip netip.Addr, reason string) {
	if isNoise(kind) {
		ok, repeat := p.notes.admit(eventKey{mac, kind}, time.Now())
		if !ok {
			if !repeat {
				p.count("events_suppressed")
			}
			return
		}
	}
	e := subscribers.Event{Time: time.Now(), Kind: kind, MAC: subscribers.MAC(macBytes(mac)), ISP: isp, IP: ip, Reason: reason}
	// Stored off the caller's goroutine: the control plane never waits for
	// an fsync (a flood of rejections must not stall everyone's DHCP), and
	// concurrent events share fsyncs with binding commits (group commit).
	// Bounded: beyond maxEventWriters in flight, events are counted and
	// dropped (the log line below still records them).
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
		p.count("events_dropped")
	}
	lvl := slog.LevelInfo
	switch kind {
	case subscribers.EventRejected, subscribers.EventTimeout, subscribers.EventNak, subscribers.EventUnknown, subscribers.EventBlocked:
		lvl = slog.LevelWarn
	}
	p.log.Log(context.Background(), lvl, "dhcp "+string(kind), "mac", binding.MACString(mac), "isp", isp, "ip", ip, "reason", reason)
}
