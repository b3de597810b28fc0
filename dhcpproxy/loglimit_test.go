package dhcpproxy

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLogLimit: INFO event lines pass in a burst of logBurst, then at
// logRate a second; those held back are counted in one line a second. A
// mass expiry of 100k leases wrote 100k lines before (a trial).
func TestLogLimit(t *testing.T) {
	var l logLimit
	now := time.Unix(1000, 0)
	passed := 0
	for range 3 * logBurst {
		if l.allow(now) {
			passed++
		}
	}
	if passed != logBurst {
		t.Errorf("%d lines passed at once, want the burst of %d", passed, logBurst)
	}
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	l.flush(log, now, false)
	if !strings.Contains(b.String(), "lines="+itoa(2*logBurst)) {
		t.Errorf("summary %q, want %d lines held", b.String(), 2*logBurst)
	}
	b.Reset()
	l.flush(log, now, false)
	if b.Len() != 0 {
		t.Errorf("a second summary with nothing held: %q", b.String())
	}
	// A second later: logRate more pass.
	now = now.Add(time.Second)
	passed = 0
	for range 2 * logRate {
		if l.allow(now) {
			passed++
		}
	}
	if passed != logRate {
		t.Errorf("%d lines passed a second later, want %d", passed, logRate)
	}
	l.flush(log, now, false)
	if !strings.Contains(b.String(), "lines="+itoa(logRate)) {
		t.Errorf("summary %q, want %d lines held", b.String(), logRate)
	}
	// The next summary is not due within the second of the last but for
	// Close (force).
	b.Reset()
	l.allow(now)
	l.flush(log, now.Add(500*time.Millisecond), false)
	if b.Len() != 0 {
		t.Errorf("summary within a second of the last: %q", b.String())
	}
	l.flush(log, now.Add(500*time.Millisecond), true)
	if !strings.Contains(b.String(), "lines=1") {
		t.Errorf("forced summary %q, want 1 line held", b.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
