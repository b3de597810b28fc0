package api

import (
	"strings"
	"testing"
)

// TestImportJSONArray: a JSON array posted to an import (its media type
// application/json is taken) is refused whole, 400 saying so, before any
// line is taken: pretty-printed, its last element alone is an NDJSON line,
// and a field trial's import created that one customer and refused the
// others as "truncated JSON" and "more than one JSON value on the line".
// A line with a comma after its object says so.
func TestImportJSONArray(t *testing.T) {
	f := newFixture(t)
	for name, body := range map[string]string{
		"pretty":  "[\n  {\"customer_id\":\"arr-1\"},\n  {\"customer_id\":\"arr-2\"}\n]\n",
		"compact": `[{"customer_id":"arr-1"},{"customer_id":"arr-2"}]`,
		"blanks":  "\n  \n[\n{\"customer_id\":\"arr-1\"},\n{\"customer_id\":\"arr-2\"}]\n",
	} {
		w := f.do("POST", "/v1/isps/alpha/customers:import", "alpha", body, "Content-Type", "application/json")
		if p := decodeProblem(t, w); p.Status != 400 || !strings.Contains(p.Detail, "JSON array") || !strings.Contains(p.Detail, "nothing was imported") {
			t.Errorf("%s: %d %+v, want 400 naming the JSON array", name, w.Code, p)
		}
		for _, id := range []string{"arr-1", "arr-2"} {
			if w := f.do("GET", "/v1/isps/alpha/customers/"+id, "alpha", ""); w.Code != 404 {
				t.Errorf("%s: %s imported from an array: %d %s", name, id, w.Code, w.Body)
			}
		}
	}
	w := f.do("POST", "/v1/isps/alpha/devices:import", "alpha", "[\n{\"mac\":\"02:00:00:00:00:71\",\"customer_id\":\"c-1\"}\n]\n", "Content-Type", "application/json")
	if p := decodeProblem(t, w); p.Status != 400 || !strings.Contains(p.Detail, "JSON device per line") {
		t.Errorf("devices: %d %+v, want 400 naming the JSON array", w.Code, p)
	}
	// An NDJSON body with a comma after a line's object: that line's
	// error says so; the others are taken.
	w = f.do("POST", "/v1/isps/alpha/customers:import", "alpha", "{\"customer_id\":\"cm-1\"},\n{\"customer_id\":\"cm-2\"}\n", "Content-Type", "application/x-ndjson")
	out := strings.Split(strings.TrimSpace(w.Body.String()), "\n")
	if w.Code != 200 || len(out) != 2 || !strings.Contains(out[0], `"result":"error"`) || !strings.Contains(out[0], "a comma after the JSON object") ||
		!strings.Contains(out[1], `"customer_id":"cm-2","result":"created"`) {
		t.Errorf("comma: %d\n%s", w.Code, w.Body)
	}
}
