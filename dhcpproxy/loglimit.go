package dhcpproxy

import (
	"log/slog"
	"sync"
	"time"
)

// The log names every binding that starts, renews or ends (an INFO line
// per event), the audit trail beside the event log. A mass end (100k
// leases running out together, a bulk suspension) wrote 100k lines in
// seconds (a trial: 15.7 MB), which a journal rate-limits blindly and an
// operator cannot read. So INFO event lines pass at logRate a second, in
// bursts of logBurst; the lines held back are counted in one line a second
// (the event log, ctl events, has each). Warnings (refusals) have their own
// budgets (note) and are not limited here.
const (
	logRate  = 200
	logBurst = 2000
)

// logLimit is the token bucket of the INFO event lines.
type logLimit struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	held    int       // lines held back since the last summary
	summary time.Time // when the last summary was written
}

// allow reports whether a line may be written at now, counting it if not.
func (l *logLimit) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = logBurst
	} else {
		l.tokens = min(logBurst, l.tokens+now.Sub(l.last).Seconds()*logRate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.held++
	return false
}

// flush writes the count of lines held back, at most once a second
// (force: now, whatever is due).
func (l *logLimit) flush(log *slog.Logger, now time.Time, force bool) {
	l.mu.Lock()
	held := l.held
	if held == 0 || !force && now.Sub(l.summary) < time.Second {
		l.mu.Unlock()
		return
	}
	l.held, l.summary = 0, now
	l.mu.Unlock()
	log.Info("dhcp: event lines not logged (over 200 a second; ctl events has each)", "lines", held)
}
