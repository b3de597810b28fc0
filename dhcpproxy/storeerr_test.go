package dhcpproxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogLimiter: a message goes through once a period, each on its own
// clock, and the next line says how many were held back.
func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(1000, 0)
	type step struct {
		msg     string
		at      time.Duration
		ok      bool
		held    uint64
		comment string
	}
	for i, s := range []step{
		{"a", 0, true, 0, "first"},
		{"a", time.Second, false, 0, "within the period"},
		{"a", 2 * time.Second, false, 0, ""},
		{"b", 3 * time.Second, true, 0, "another message, its own clock"},
		{"a", 10 * time.Second, true, 2, "the period is over: two held back"},
		{"a", 11 * time.Second, false, 0, ""},
		{"a", 25 * time.Second, true, 1, ""},
		{"a", 40 * time.Second, true, 0, "none held back"},
	} {
		ok, held := l.allow(s.msg, t0.Add(s.at), 10*time.Second)
		if ok != s.ok || held != s.held {
			t.Errorf("step %d (%s at %v, %s): allow = %v, %d; want %v, %d", i, s.msg, s.at, s.comment, ok, held, s.ok, s.held)
		}
	}
}

// TestStoreErrorLogLimited: a store refusing every write (a damaged file)
// is counted at every refusal but logged once: 1000 refused binding ends
// in a row (the expiry's retries) made 1000 lines at Error.
func TestStoreErrorLogLimited(t *testing.T) {
	var buf bytes.Buffer
	p := &Proxy{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 1000 {
		p.storeError("dhcp: binding end not committed; nothing changed", "err", errors.New("the store file is damaged"))
	}
	p.storeError("dhcp: binding not committed; ACK withheld", "err", errors.New("the store file is damaged"))
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines logged, want 2 (one per message):\n%s", n, buf.String())
	}
	if got := p.Counters()["store_error"]; got != 1001 {
		t.Errorf("store_error = %d, want 1001", got)
	}
}
