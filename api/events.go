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

// missed reports whether events after `after` were trimmed before they
// could be read (after 0 asks for "from the oldest kept": nothing missed).
func missed(after uint64, p tenants.EventPage) bool {
	return after > 0 && p.Oldest > 0 && after+1 < p.Oldest
}
