package api

import (
	"net/http/httptest"
	"testing"
)

// TestUnknownRouteNeedsToken: a request no route takes (an unknown path,
// another method on a route's path, a path not in canonical form) is
// answered as any route answers it without a token the box knows: 401
// (400 for a malformed header), with no Allow header, so a caller without
// a token cannot tell routes from other paths by their 404s and 405s. It
// answered 404 (405 with Allow) to anyone. With a claim token it is
// answered as every route but POST /v1/claims answers one (403
// forbidden, no Allow): it was 404 or 405, which mapped the routes for an
// installer (fails without). With an operator or ISP token, and on the
// control socket (no token), it is still 404 or 405.
func TestUnknownRouteNeedsToken(t *testing.T) {
	f := newFixture(t)
	others := []struct {
		method, path string
		status       int
	}{
		{"GET", "/v1/nothing", 404},
		{"GET", "/admin", 404},
		{"PUT", "/v1/isps/alpha/customers", 405},
		{"DELETE", "/v1/stats", 405},
		{"GET", "//v1/isps", 404},
		{"GET", "/v1/isps/", 404},
		{"GET", "/v1/claims", 405},
	}
	for _, o := range others {
		for _, c := range []struct {
			who    string
			hdr    []string
			status int
			typ    string
		}{
			{"", nil, 401, "unauthorized"},
			{"bad", nil, 401, "unauthorized"},
			{"", []string{"Authorization", "Bearer"}, 400, "malformed-authorization"},
		} {
			w := f.do(o.method, o.path, c.who, "", c.hdr...)
			p := decodeProblem(t, w)
			if w.Code != c.status || p.Type != ProblemTypePrefix+c.typ || w.Header().Get("Allow") != "" {
				t.Errorf("%s %s, token %q %v: %d %s (Allow %q); want %d %s without Allow", o.method, o.path, c.who, c.hdr,
					w.Code, p.Type, w.Header().Get("Allow"), c.status, c.typ)
			}
			if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s, token %q: 401 without WWW-Authenticate", o.method, o.path, c.who)
			}
		}
		cw := f.do(o.method, o.path, "claim", "")
		cp := decodeProblem(t, cw)
		if cw.Code != 403 || cp.Type != ProblemTypePrefix+"forbidden" || cp.Detail != claimOnly || cw.Header().Get("Allow") != "" {
			t.Errorf("%s %s as claim: %d %s %q (Allow %q); want 403 forbidden %q without Allow", o.method, o.path,
				cw.Code, cp.Type, cp.Detail, cw.Header().Get("Allow"), claimOnly)
		}
		if k := f.do("GET", "/v1/isps", "claim", ""); k.Code != cw.Code || decodeProblem(t, k).Detail != cp.Detail {
			t.Errorf("%s %s as claim: %d, where a route it may not use answers %d", o.method, o.path, cw.Code, k.Code)
		}
		for _, who := range []string{"operator", "alpha"} {
			w := f.do(o.method, o.path, who, "")
			if p := decodeProblem(t, w); w.Code != o.status || p.Status != o.status {
				t.Errorf("%s %s as %s: %d, want %d", o.method, o.path, who, w.Code, o.status)
			}
			if (o.status == 405) != (w.Header().Get("Allow") != "") {
				t.Errorf("%s %s as %s: %d with Allow %q", o.method, o.path, who, w.Code, w.Header().Get("Allow"))
			}
		}
		// The control socket acts as the operator without a token.
		r := httptest.NewRequest(o.method, o.path, nil)
		w := httptest.NewRecorder()
		f.srv.SocketHandler().ServeHTTP(w, r)
		if w.Code != o.status {
			t.Errorf("%s %s over the socket: %d, want %d", o.method, o.path, w.Code, o.status)
		}
	}
}
