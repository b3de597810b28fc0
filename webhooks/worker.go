package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// KindEventsLost is the kind of the synthetic message that replaces
// events trimmed from the log before they were delivered.
const KindEventsLost = "events-lost"

// LostMessage is the body of an events-lost message: the ISP's events
// FirstSeq..LastSeq (its own sequence numbers) were trimmed from the log
// before delivery.
type LostMessage struct {
	Kind     string    `json:"kind"` // KindEventsLost
	Time     time.Time `json:"time"`
	ISP      string    `json:"isp"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Reason   string    `json:"reason"`
}

// LostID is the webhook-id of the events-lost message for first..last.
func LostID(first, last uint64) string { return fmt.Sprintf("lost-%d-%d", first, last) }

// worker delivers one ISP's events.
type worker struct {
	m      *Manager
	isp    string
	target atomic.Pointer[target]
	kick   chan struct{} // a new target: retry now (buffered 1)
	ctx    context.Context
	cancel context.CancelFunc

	// acked is the in-memory cursor: the last acknowledged ISPSeq. The
	// committer stores it; commit (buffered 1) says it moved.
	acked  atomic.Uint64
	commit chan struct{}
	// idleAck: when run last woke the committer for a cursor moved past
	// other ISPs' events only (see skipAckEvery).
	idleAck time.Time

	mu sync.Mutex
	st Status // Cursor, Lag and URL are filled by Manager.fill
}

// newWorker makes t's ISP's worker. m.mu held, m.ctx set.
func newWorker(m *Manager, t *target) *worker {
	ctx, cancel := context.WithCancel(m.ctx)
	w := &worker{m: m, isp: t.isp, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		commit: make(chan struct{}, 1), st: Status{ISP: t.isp}}
	w.target.Store(t)
	return w
}

// setTarget makes the next attempt use t; a worker waiting to retry
// tries at once.
func (w *worker) setTarget(t *target) {
	w.target.Store(t)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run delivers until w.ctx ends, then stores the cursor.
func (w *worker) run() {
	store := w.m.store
	var cursor uint64
	for {
		seq, _, err := store.WebhookCursor(w.isp)
		if err == nil {
			cursor = seq
			break
		}
		w.m.log.Error("webhook: cannot read the delivery cursor", "isp", w.isp, "err", err)
		if errors.Is(err, subscribers.ErrClosed) || !w.sleep(time.Second) {
			return
		}
	}
	w.acked.Store(cursor)
	stop, committed := make(chan struct{}), make(chan struct{})
	go func(stored uint64) {
		defer close(committed)
		w.committer(stored, stop)
	}(cursor)
	defer func() {
		close(stop)
		<-committed
	}()

	for w.ctx.Err() == nil {
		evs, oldest, newest, err := store.WebhookEvents(w.isp, cursor, batch)
		if err != nil {
			if errors.Is(err, subscribers.ErrClosed) {
				return
			}
			if !errors.Is(err, subscribers.ErrCorrupt) {
				w.m.log.Error("webhook: reading events", "isp", w.isp, "err", err)
				if !w.sleep(time.Second) {
					return
				}
				continue
			}
			// Undecodable events cannot be sent; the ones that
			// decoded are.
			w.m.log.Warn("webhook: skipping events that do not decode", "isp", w.isp, "err", err)
			if len(evs) == 0 {
				// Nothing of this ISP decodes up to newest.
				cursor = max(cursor, newest)
				w.ack(cursor)
				continue
			}
		}
		if cursor+1 < oldest {
			first, last := cursor+1, oldest-1
			msg := LostMessage{Kind: KindEventsLost, Time: time.Now().UTC(), ISP: w.isp, FirstSeq: first, LastSeq: last,
				Reason: fmt.Sprintf("events %d..%d were trimmed from the event log (retention) before they were delivered; GET /v1/isps/%s/events shows what the log still holds", first, last, w.isp)}
			body, _ := json.Marshal(msg)
			if !w.deliver(LostID(first, last), body) {
				return
			}
			w.mu.Lock()
			w.st.Lost++
			w.mu.Unlock()
			w.m.log.Warn("webhook: events lost before delivery", "isp", w.isp, "first", first, "last", last)
			cursor = last
			w.ack(cursor)
		}
		if len(evs) == 0 {
			// None of this ISP's events up to newest (one read, see
			// WebhookEvents): the cursor moves past the other ISPs'.
			// Left behind them, it would fall before the log's oldest
			// once they are trimmed, and the receiver would be told
			// events were lost that were never its ISP's.
			if newest > cursor {
				cursor = newest
				w.skipAck(cursor)
			}
			if err := store.WaitEventsOf(w.ctx, w.isp, newest); err != nil && errors.Is(err, subscribers.ErrClosed) {
				return
			}
			continue
		}
		for _, e := range evs {
			if e.ISPSeq <= cursor {
				continue
			}
			body, err := json.Marshal(tenants.ISPEventView(e))
			if err != nil {
				w.m.log.Error("webhook: encoding an event", "isp", w.isp, "seq", e.ISPSeq, "err", err)
				continue
			}
			if !w.deliver(strconv.FormatUint(e.ISPSeq, 10), body) {
				return
			}
			cursor = e.ISPSeq
			w.ack(cursor)
		}
	}
}

// sleep waits d or until w.ctx ends (false).
func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// skipAckEvery is the least time between two stores of a cursor moved
// only past other ISPs' events: a quiet ISP's worker on a busy box wakes
// at every event and would otherwise write its cursor ten times a second.
// In between, the cursor is stored with the next delivery's, or when the
// worker stops; a crash leaves the stored one at most this far behind.
const skipAckEvery = 5 * time.Second

// skipAck moves the in-memory cursor to seq, past other ISPs' events, and
// wakes the committer at most every skipAckEvery.
func (w *worker) skipAck(seq uint64) {
	w.acked.Store(seq)
	if now := time.Now(); now.Sub(w.idleAck) >= skipAckEvery {
		w.idleAck = now
		w.ack(seq)
	}
}

// ack moves the in-memory cursor to seq and wakes the committer.
func (w *worker) ack(seq uint64) {
	w.acked.Store(seq)
	select {
	case w.commit <- struct{}{}:
	default:
	}
}

// cursorEvery is the least time between two writes of a worker's cursor:
// a receiver acknowledging hundreds of events a second costs the store
// ten writes a second, not one per acknowledgement (each is a bbolt
// commit, and the store's group commit runs them one at a time with the
// DHCP path's binding commits).
const cursorEvery = 100 * time.Millisecond

// committer stores the acknowledged cursor whenever it moved, one store
// write for every acknowledgement since the last one (at most one per
// cursorEvery), and once more when stop is closed (the worker's loop is
// over: no more acknowledgements).
func (w *worker) committer(stored uint64, stop <-chan struct{}) {
	flush := func() bool {
		a := w.acked.Load()
		if a <= stored {
			return true
		}
		if err := w.m.store.SetWebhookCursor(w.isp, a); err != nil {
			w.m.log.Error("webhook: storing the delivery cursor", "isp", w.isp, "seq", a, "err", err)
			return false
		}
		stored = a
		return true
	}
	for {
		select {
		case <-w.commit:
			for !flush() {
				if !w.sleep(time.Second) {
					flush()
					return
				}
			}
			// Let acknowledgements gather before the next write.
			select {
			case <-time.After(cursorEvery):
			case <-stop:
				flush()
				return
			}
		case <-stop:
			flush()
			return
		}
	}
}

// deliver sends one message until it is acknowledged (true) or w.ctx
// ends (false).
func (w *worker) deliver(id string, body []byte) bool {
	attempts := 0
	for {
		if w.ctx.Err() != nil {
			return false // stopping: no new attempt
		}
		t := w.target.Load()
		err := w.post(t, id, body)
		now := time.Now()
		if err == nil {
			w.mu.Lock()
			w.st.Delivered++
			w.st.LastSuccess = now
			w.st.Attempts = 0
			w.st.NextAttempt = time.Time{}
			w.mu.Unlock()
			if attempts > 0 {
				w.m.log.Info("webhook delivered after retries", "isp", w.isp, "id", id, "attempts", attempts+1)
			}
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		attempts++
		d := Backoff(attempts, w.m.minBackoff, t.retryMax, jitter())
		// A Retry-After the receiver sent (429, 503) is the least delay,
		// up to the back-off cap (Standard Webhooks 1.0, "Delivery success
		// and failure"; RFC 9110 10.2.3).
		var ra *retryAfterError
		if errors.As(err, &ra) && ra.after > d {
			d = min(ra.after, max(t.retryMax, d))
		}
		w.mu.Lock()
		w.st.Failures++
		w.st.Attempts = attempts
		w.st.LastError = err.Error()
		w.st.LastErrorTime = now
		w.st.NextAttempt = now.Add(d)
		w.mu.Unlock()
		lvl := w.m.log.Debug
		if attempts == 1 || attempts%10 == 0 {
			lvl = w.m.log.Warn
		}
		lvl("webhook delivery failed", "isp", w.isp, "id", id, "attempt", attempts, "retry_in", d.Round(time.Millisecond), "err", err)
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-w.kick:
			tm.Stop()
		case <-w.ctx.Done():
			tm.Stop()
			return false
		}
	}
}

// post makes one attempt: a 2xx answer is nil.
func (w *worker) post(t *target, id string, body []byte) error {
	// An attempt in flight when the worker stops gets shutdownGrace to
	// finish: its acknowledgement, if it comes, is stored, and the event
	// is not sent again after the restart.
	ctx, cancel := context.WithCancel(context.WithoutCancel(w.ctx))
	defer cancel()
	defer context.AfterFunc(w.ctx, func() {
		tm := time.AfterFunc(w.m.shutdownGrace, cancel)
		context.AfterFunc(ctx, func() { tm.Stop() })
	})()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "ispmux-webhooks/1")
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", Sign(t.secret, id, ts, body))
	resp, err := t.client.Do(req)
	if err != nil {
		// The url.Error names the full URL (user info, query): say
		// what happened with the shown one.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("POST %s: timeout: %v", t.shown, err)
		}
		return fmt.Errorf("POST %s: %v", t.shown, err)
	}
	defer resp.Body.Close()
	// More than clean keeps: a part of the URL that begins within what
	// is shown is hidden whole (hide), not cut where the reading stops.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c >= 300 && c < 400:
		return fmt.Errorf("POST %s: HTTP %d: redirect to %q not followed", t.shown, c, redirectShown(resp))
	default:
		err := fmt.Errorf("POST %s: HTTP %d", t.shown, c)
		if body := clean(t.hide(string(head))); body != "" {
			err = fmt.Errorf("%w: %s", err, body) // none: no dangling colon (a trial)
		}
		if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
			return &retryAfterError{err: err, after: d}
		}
		return err
	}
}

// retryAfterError is a failed attempt whose answer asked for the next
// one no sooner than after.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110 10.2.3); 0 if absent, malformed or past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// clean makes a receiver's text safe for a log line and a status: one
// line, printable, at most 200 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// redirectShown is where resp redirects to, shown as configs.WebhookShown
// shows the webhook's own URL: a receiver moved from http:// to https://
// redirects to the same path, which may hold its credential
// (https://hooks.example/T0/B0/secret). A relative Location is resolved
// against the request's URL; one that does not parse is "(not a URL)".
func redirectShown(resp *http.Response) string {
	if resp.Header.Get("Location") == "" {
		return ""
	}
	u, err := resp.Location()
	if err != nil {
		return "(not a URL)"
	}
	return clean(configs.WebhookShown(u))
}

// hide is s (a receiver's answer) with every part of the target's URL
// that configs.WebhookShown leaves out replaced by "…": a receiver's
// error page may echo the request ("Cannot POST /T0/B0/secret", as
// Express's 404 does), and its text goes into the status, the errors and
// the log as the URL does.
func (t *target) hide(s string) string {
	for _, h := range t.hidden {
		s = strings.ReplaceAll(s, h, "…")
	}
	return s
}
