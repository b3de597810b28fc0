package api

import (
	"fmt"
	"strings"
	"testing"
)

// TestJSONCharset: JSON text is UTF-8 (RFC 8259 §8.1), so a body or an
// import declared in another charset is 415, naming the charset, and
// reaches no Service call; UTF-8 declared in any case (or as utf8), or
// US-ASCII (a subset), is
// taken as no charset is.
func TestJSONCharset(t *testing.T) {
	f := newFixture(t)
	routes := []struct{ path, mt, body string }{
		{"/v1/isps/alpha/customers", "application/json", `{"customer_id":"cs-%d"}`},
		{"/v1/isps/alpha/customers:import", "application/x-ndjson", `{"customer_id":"cs-%d"}` + "\n"},
		{"/v1/isps/alpha/customers:import", "application/json", `{"customer_id":"cs-%d"}` + "\n"},
	}
	n := 0
	for _, rt := range routes {
		for _, cs := range []string{"latin1", "ISO-8859-1", "utf-16", `"windows-1252"`} {
			n++
			ct := rt.mt + "; charset=" + cs
			calls := f.svc.callCount()
			w := f.do("POST", rt.path, "alpha", fmt.Sprintf(rt.body, n), "Content-Type", ct)
			p := decodeProblem(t, w)
			name := strings.Trim(cs, `"`)
			if w.Code != 415 || p.Type != ProblemTypePrefix+"unsupported-media" ||
				!strings.Contains(p.Detail, `charset "`+name+`"`) || !strings.Contains(p.Detail, "UTF-8") {
				t.Errorf("%s %s: %d %q, want 415 naming charset %q", rt.path, ct, w.Code, p.Detail, name)
			}
			if got := f.svc.callCount(); got != calls {
				t.Errorf("%s %s: the Service was called (%d calls, was %d)", rt.path, ct, got, calls)
			}
		}
		for _, cs := range []string{"", "; charset=utf-8", "; charset=UTF-8", "; charset=utf8", `; charset="utf-8"`, "; charset=us-ascii", "; charset=US-ASCII"} {
			n++
			ct := rt.mt + cs
			w := f.do("POST", rt.path, "alpha", fmt.Sprintf(rt.body, n), "Content-Type", ct)
			if w.Code != 200 && w.Code != 201 {
				t.Errorf("%s %s: %d %s, want it taken", rt.path, ct, w.Code, w.Body)
			}
		}
	}
}
