package api

import (
	"net/http"
	"testing"
)

// Requests are counted by route pattern (never the path sent) and status.
func TestRequestStats(t *testing.T) {
	f := newFixture(t)
	f.do("GET", "/v1/isps/alpha", "operator", "")
	f.do("GET", "/v1/isps/beta", "operator", "")
	f.do("GET", "/v1/isps/alpha", "none", "")
	f.do("GET", "/v1/no/such/thing", "operator", "")
	f.do("PUT", "/v1/isps", "operator", "")
	counts, lat := f.srv.RequestStats()
	got := map[RequestCount]bool{}
	for _, c := range counts {
		got[c] = true
	}
	for _, want := range []RequestCount{
		{"GET /v1/isps/{isp}", http.StatusOK, 2},
		{"GET /v1/isps/{isp}", http.StatusUnauthorized, 1},
		{RouteOther, http.StatusNotFound, 1},
		{RouteOther, http.StatusMethodNotAllowed, 1},
	} {
		if !got[want] {
			t.Errorf("no %+v in %+v", want, counts)
		}
	}
	if len(counts) != 4 {
		t.Errorf("counts %+v", counts)
	}
	var n uint64
	for _, l := range lat {
		n += l.Latency.Count
	}
	if len(lat) != 2 || n != 5 {
		t.Errorf("latencies %+v", lat)
	}
}
