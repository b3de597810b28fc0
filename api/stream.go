package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// StreamReset is the data of an `event: reset`: the events after After up
// to Oldest-1 were trimmed before the reader got them (or After is newer
// than the log: a restored store); the stream goes on from Oldest (its id
// is the new resume point).
type StreamReset struct {
	After  uint64 `json:"after"`
	Oldest uint64 `json:"oldest"`
	Newest uint64 `json:"newest"`
}

const streamBatch = 500

// streamEvents serves Server-Sent Events: `id:` the event's sequence,
// `event:` its kind, `data:` the tenants.Event as JSON. It resumes after
// Last-Event-ID (or ?after=); with neither it starts after the newest
// event (live events only). A heartbeat goes out every Limits.Heartbeat
// when nothing else does. The heartbeat and the position at the start
// carry `id:` with no data: an SSE client takes the resume point from it
// and dispatches nothing (WHATWG HTML §9.2.6), so an ISP's stream moves
// past other ISPs' events and a reconnect after they were trimmed is no
// reset.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, c *call) {
	var after uint64
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = r.URL.Query().Get("after")
	}
	if resume != "" {
		n, err := parseSeq(strings.TrimSpace(resume))
		if err != nil {
			s.problem(w, r, "bad-request", fmt.Sprintf("Last-Event-ID (or after) must be an event sequence number, got %q", resume))
			return
		}
		after = n
	}
	key := string(c.p.Kind) + "\x00" + c.p.ISP + "\x00" + c.p.Name
	if !s.acquireStream(key) {
		// Retry-After as with every 429 (the OpenAPI's promise; an
		// integrator's trial found none): a stream of this token may
		// close meanwhile.
		p := newProblem("too-many-streams", fmt.Sprintf("this token has %d event streams open already: close one, or retry later", max(1, s.cfg.MaxStreamsPerToken)))
		p.RetryAfter = streamRetryAfter
		writeProblem(w, r, p)
		return
	}
	defer s.releaseStream(key)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stop: // Shutdown: streams end, the client resumes elsewhere/later
			cancel()
		case <-ctx.Done():
		}
	}()

	first, err := s.svc.Events(ctx, c.isp, after, streamBatch)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for requests, not
	// streams: each write gets its own deadline instead (write below).
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	var wrote time.Time // the last write: a heartbeat follows at most Heartbeat after it
	write := func() error {
		if err := rc.SetWriteDeadline(time.Now().Add(s.Limits.StreamWrite)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		wrote = time.Now()
		return rc.Flush()
	}
	fmt.Fprintf(bw, "retry: 3000\n\n")

	page := first
	if resume == "" {
		// Live only: start after the newest event.
		after = first.Newest
		page = tenants.EventPage{Oldest: first.Oldest, Newest: first.Newest}
	} else if missed(after, first) || after > first.Newest {
		// The reader's place is gone (trimmed, or newer than the log):
		// say so, and move its resume point to where we go on.
		resetID := first.Oldest - 1
		if after > first.Newest {
			resetID = first.Newest
			page = tenants.EventPage{Oldest: first.Oldest, Newest: first.Newest}
		}
		data, _ := json.Marshal(StreamReset{After: after, Oldest: first.Oldest, Newest: first.Newest})
		fmt.Fprintf(bw, "id: %d\nevent: reset\ndata: %s\n\n", resetID, data)
		after = resetID
	}
	// Where the stream stands: a client that has seen no event yet
	// resumes from here after a disconnect (package client does).
	fmt.Fprintf(bw, "id: %d\n: position %d\n\n", after, after)
	if err := write(); err != nil {
		return
	}
	for {
		for _, ev := range page.Events {
			if ev.Seq <= after {
				continue // never twice
			}
			after = ev.Seq
			if c.isp != "" && ev.ISP != c.isp {
				continue // the Service filters; an ISP's stream never shows another's events anyway
			}
			data, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			fmt.Fprintf(bw, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, sseField(ev.Kind), data)
		}
		if len(page.Events) > 0 {
			if err := write(); err != nil {
				return
			}
		}
		if c.isp != "" && len(page.Events) < streamBatch {
			after = max(after, page.Newest) // see listEvents
		}
		if len(page.Events) < streamBatch {
			// Caught up: wait for news, with a heartbeat at most
			// Heartbeat after the last write. A wake-up for other
			// ISPs' events writes nothing to an ISP's stream: the
			// deadline counts from the last write, not the wake-up,
			// or a busy log kept a quiet ISP's stream silent.
			var err error
			if wait := s.Limits.Heartbeat - time.Since(wrote); wait > 0 {
				wctx, wcancel := context.WithTimeout(ctx, wait)
				err = s.svc.WaitEvents(wctx, c.isp, after)
				if errors.Is(wctx.Err(), context.DeadlineExceeded) {
					err = nil
				}
				wcancel()
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("api event stream", "request_id", c.actor.RequestID, "err", err)
				return
			}
			if time.Since(wrote) >= s.Limits.Heartbeat {
				fmt.Fprintf(bw, "id: %d\n: heartbeat %d\n\n", after, after)
				if err := write(); err != nil {
					return
				}
			}
		}
		if !s.stillValid(c) {
			return // the token was rotated out (Reload): 401 from now on, streams included
		}
		var err error
		page, err = s.svc.Events(ctx, c.isp, after, streamBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("api event stream", "request_id", c.actor.RequestID, "err", err)
			}
			return
		}
		if missed(after, page) {
			// Trimmed while we waited (a very slow reader).
			data, _ := json.Marshal(StreamReset{After: after, Oldest: page.Oldest, Newest: page.Newest})
			fmt.Fprintf(bw, "id: %d\nevent: reset\ndata: %s\n\n", page.Oldest-1, data)
			after = page.Oldest - 1
		}
	}
}

// sseField keeps a value on one SSE line.
func sseField(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strconv.Quote(s)
	}
	return s
}

// streamRetryAfter is the Retry-After, in seconds, of a stream refused
// for the token's open streams.
const streamRetryAfter = 10
