package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/ispmux/ispmux/tenants"
)

// EventList is the answer of GET …/events: up to limit events after the
// asked sequence, Next the sequence to ask after next time, the range the
// log holds, and Missed when events after the asked sequence were
// already trimmed.
type EventList struct {
	Items  []tenants.Event `json:"items"`
	Next   string          `json:"next"`
	Oldest uint64          `json:"oldest"`
	Newest uint64          `json:"newest"`
	Missed bool            `json:"missed,omitempty"`
}

func parseSeq(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	after, err := parseSeq(q.Get("after"))
	if err != nil {
		s.problem(w, r, "bad-request", fmt.Sprintf("after must be an event sequence number, got %q", q.Get("after")))
		return
	}
	limit := tenants.DefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > tenants.MaxLimit {
			s.problem(w, r, "bad-request", fmt.Sprintf("limit must be 1..%d, got %q", tenants.MaxLimit, l))
			return
		}
		limit = n
	}
	if q.Has("mac") {
		var from *uint64 // none: the device's newest events
		if q.Has("after") {
			from = &after
		}
		s.listMACEvents(w, r, c, q.Get("mac"), from, limit)
		return
	}
	p, err := s.svc.Events(r.Context(), c.isp, after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := EventList{Items: []tenants.Event{}, Oldest: p.Oldest, Newest: p.Newest, Missed: missed(after, p)}
	if after > p.Newest {
		// Newer than the log (a restored store): as the stream's reset,
		// say so and go on from the newest, or the events up to after
		// would be skipped silently.
		after, out.Missed = p.Newest, true
	}
	next := after
	for _, ev := range p.Events {
		next = max(next, ev.Seq)
		if c.isp == "" || ev.ISP == c.isp {
			out.Items = append(out.Items, ev)
		}
	}
	if c.isp != "" && len(p.Events) < limit {
		// A filtered page that is not full has looked at the whole log
		// as it was read (tenants.EventPage: Newest is of the same
		// read): the next read starts after it, not again at the last
		// event of this ISP.
		next = max(next, p.Newest)
	}
	out.Next = strconv.FormatUint(next, 10)
	writeJSON(w, http.StatusOK, out)
}

// listMACEvents is GET …/events?mac=: up to limit events of one device
// (the caller's ISP's only, for an ISP), after sequence *after, or
// (after nil) its newest, read from the store's index of events by MAC:
// a support desk's "what happened to this device" finds its events of an
// hour ago, which a walk of the log's newest pages did not reach on a
// busy box. The answer is the events list's: next is the after of the
// next poll, missed says events after `after` were trimmed (some may
// have been this device's).
func (s *Server) listMACEvents(w http.ResponseWriter, r *http.Request, c *call, mac string, after *uint64, limit int) {
	p, err := s.svc.EventsOfMAC(r.Context(), c.isp, mac, after, limit)
	if err != nil {
		s.failQuery(w, r, err) // a MAC that does not parse: 400
		return
	}
	out := EventList{Items: []tenants.Event{}, Oldest: p.Oldest, Newest: p.Newest}
	var next uint64
	if after != nil {
		next, out.Missed = *after, missed(*after, p)
		if *after > p.Newest {
			next, out.Missed = p.Newest, true // as listEvents
		}
	}
	for _, ev := range p.Events {
		if c.isp == "" || ev.ISP == c.isp {
			next = max(next, ev.Seq)
			out.Items = append(out.Items, ev)
		}
	}
	if after == nil || len(p.Events) < limit {
		// The device's newest events, or less than a page of them:
		// every one up to the log's newest (of the same read) was
		// looked at, so the next poll starts after it.
		next = max(next, p.Newest)
	}
	out.Next = strconv.FormatUint(next, 10)
	writeJSON(w, http.StatusOK, out)
}

// missed reports whether events after `after` were trimmed before they
// could be read (after 0 asks for "from the oldest kept": nothing missed).
func missed(after uint64, p tenants.EventPage) bool {
	return after > 0 && p.Oldest > 0 && after+1 < p.Oldest
}
