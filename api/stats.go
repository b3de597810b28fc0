package api

import (
	"sort"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/histo"
)

// RouteOther is the route of requests that matched no route (404, 405;
// 401 or 400 to one without a known token).
const RouteOther = "other"

// requestStats counts the API's requests by route and status, and times
// them by route. Routes are the route table's patterns ("GET
// /v1/isps/{isp}") and RouteOther, never a path as sent: the label set is
// bounded. The zero value is ready.
type requestStats struct {
	mu     sync.Mutex
	counts map[requestKey]uint64
	times  map[string]*histo.Histogram
}

type requestKey struct {
	route string
	code  int
}

// record counts one request of route answered with code, taking d.
func (rs *requestStats) record(route string, code int, d time.Duration) {
	rs.mu.Lock()
	if rs.counts == nil {
		rs.counts, rs.times = map[requestKey]uint64{}, map[string]*histo.Histogram{}
	}
	rs.counts[requestKey{route, code}]++
	h := rs.times[route]
	if h == nil {
		h = new(histo.Histogram)
		rs.times[route] = h
	}
	rs.mu.Unlock()
	h.Observe(d)
}

// RequestCount is the number of requests of one route answered with one
// status code.
type RequestCount struct {
	Route string // "METHOD /pattern", or RouteOther
	Code  int
	Count uint64
}

// RouteLatency is the time the requests of one route took (to the end of
// the handler: an event stream's is its whole life).
type RouteLatency struct {
	Route   string
	Latency histo.Snapshot
}

// RequestStats returns the requests served so far by route and code, and
// their times by route, sorted by route (package metrics).
func (s *Server) RequestStats() ([]RequestCount, []RouteLatency) {
	rs := &s.reqs
	rs.mu.Lock()
	counts := make([]RequestCount, 0, len(rs.counts))
	for k, n := range rs.counts {
		counts = append(counts, RequestCount{Route: k.route, Code: k.code, Count: n})
	}
	hs := make(map[string]*histo.Histogram, len(rs.times))
	for r, h := range rs.times {
		hs[r] = h
	}
	rs.mu.Unlock()
	sort.Slice(counts, func(i, j int) bool {
		if counts[i].Route != counts[j].Route {
			return counts[i].Route < counts[j].Route
		}
		return counts[i].Code < counts[j].Code
	})
	lat := make([]RouteLatency, 0, len(hs))
	for r, h := range hs {
		lat = append(lat, RouteLatency{Route: r, Latency: h.Snapshot()})
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i].Route < lat[j].Route })
	return counts, lat
}
