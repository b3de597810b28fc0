package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequestBody sends arbitrary bodies to every route that reads one:
// the answer is a success or a well-formed problem, never a 500 or a
// panic, and an import answers NDJSON lines that each parse.
func FuzzRequestBody(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","password":"pw"}`,
		`{"customer_id":"c-1","password_hash":"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5"}`,
		`{"status":"suspended","device_limit":3}`,
		`{"mac":"02:00:00:00:00:03","customer_id":"c-1"}`,
		`{"isp":"alpha","customer_id":"c-1","password":"pw","mac":"02:00:00:00:00:03","replace":"02:00:00:00:00:01"}`,
		`{"isp":"beta","customer_id":"c-77"}`,
		"{\"customer_id\":\"a\"}\n{\"customer_id\":\"b\",\"x\":1}\n\n[]\n",
		`{"customer_id":"\u0000"}`, `null`, `[]`, `"x"`, `{`, `{}{}`, ``, "\xff\xfe",
		`{"device_limit":1e400}`, `{"status":{"a":[]}}`,
	} {
		f.Add(s)
	}
	fx := newFixture(f)
	fx.srv.Limits.MaxBody = 4096
	fx.srv.Limits.MaxImportLine = 256
	fx.srv.Limits.MaxImportBody = 8192
	targets := []struct{ method, path string }{
		{"POST", "/v1/isps/alpha/customers"},
		{"POST", "/v1/isps/alpha/customers:import"},
		{"PATCH", "/v1/isps/alpha/customers/c-1"},
		{"POST", "/v1/isps/alpha/devices"},
		{"POST", "/v1/claims"},
		{"POST", "/v1/devices/02:00:00:00:00:01/move"},
		{"POST", "/v1/devices/02:00:00:00:00:01/block"},
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, tg := range targets {
			r := httptest.NewRequest(tg.method, tg.path, strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+fx.tokens["operator"])
			w := httptest.NewRecorder()
			fx.h.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("%s %s: %d %s", tg.method, tg.path, w.Code, w.Body)
			}
			ct := w.Header().Get("Content-Type")
			switch {
			case w.Code == 204:
			case ct == "application/problem+json":
				var p Problem
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Type == "" || p.Title == "" {
					t.Fatalf("%s %s: problem %q (%v)", tg.method, tg.path, w.Body, err)
				}
			case ct == "application/x-ndjson":
				for _, l := range strings.Split(strings.TrimSpace(w.Body.String()), "\n") {
					var res map[string]any
					if err := json.Unmarshal([]byte(l), &res); err != nil || res["line"] == nil {
						t.Fatalf("import result line %q: %v", l, err)
					}
				}
			case ct == "application/json":
				if !json.Valid(w.Body.Bytes()) {
					t.Fatalf("%s %s: invalid JSON %q", tg.method, tg.path, w.Body)
				}
			default:
				t.Fatalf("%s %s: %d with Content-Type %q", tg.method, tg.path, w.Code, ct)
			}
		}
	})
}
