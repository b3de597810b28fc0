package dhcpproxy

import (
	"sync"
	"time"
)

// storeErrLogEvery is how often the same store error is logged: the rest
// are counted (store_error) and said in the next line's "suppressed". A
// store that refuses every write (a damaged file: subscribers.ErrCorrupt)
// has the expiries retried every tick and the onboarding ends every
// second, each a line at Error: thousands a second on a busy box, which
// buried every other line of the log.
const storeErrLogEvery = 10 * time.Second

// storeError counts a write the store refused (store_error) and logs it at
// Error, at most once every storeErrLogEvery per message.
func (p *Proxy) storeError(msg string, args ...any) {
	p.count("store_error")
	ok, suppressed := p.storeErrs.allow(msg, time.Now(), storeErrLogEvery)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	p.log.Error(msg, args...)
}

// logLimiter lets a message through at most once a period and counts what
// it holds back. The zero value is ready to use.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]uint64
}

// allow reports whether msg may be logged at now, and how many times it
// was held back since it last was.
func (l *logLimiter) allow(msg string, now time.Time, every time.Duration) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]uint64{}
	}
	if last, seen := l.last[msg]; seen && now.Sub(last) < every {
		l.held[msg]++
		return false, 0
	}
	l.last[msg] = now
	suppressed = l.held[msg]
	delete(l.held, msg)
	return true, suppressed
}
