package api

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/auth"
)

// TestAuthorizationHeader: RFC 6750 §3.1. A malformed Authorization
// header (Bearer with no token or two, a token with characters no
// b64token has, a scheme that is not a token, the header empty or given
// twice) is 400 malformed-authorization with error="invalid_request"; it
// was 401 unauthorized, which tells a client to get another token when
// the one it has was sent wrong. No bearer token (no header, another
// scheme) stays 401 with the bare challenge, an unknown token 401
// invalid_token; a known token is accepted with any number of spaces
// before it, the scheme in any case, and, when a token file holds it,
// with characters outside b64token.
func TestAuthorizationHeader(t *testing.T) {
	f := newFixture(t)
	// A token file holding the token itself, a character outside
	// b64token in it (auth.ReadTokenFile takes printable ASCII).
	const bang = "an-operator's!own-token-0123456789"
	file := filepath.Join(f.dir, "bang.token")
	if err := os.WriteFile(file, []byte(bang+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := append(auth.TokenFilesFromConfig(f.cfg), auth.TokenFile{Path: file, Key: "test", Principal: auth.Principal{Kind: auth.KindOperator, Name: "bang"}})
	if err := f.srv.tokens.SetFiles(files); err != nil {
		t.Fatal(err)
	}
	op := f.tokens["operator"]
	for _, c := range []struct {
		name   string
		header []string // the Authorization header's values
		status int
		auth   string // WWW-Authenticate
	}{
		{"none", nil, 401, challenge},
		{"another scheme", []string{"Basic dXNlcjpwYXNz"}, 401, challenge},
		{"unknown", []string{"Bearer not-a-token-anyone-has-0123456789"}, 401, invalidToken},
		{"unknown, padded", []string{"Bearer bm90LWEtdG9rZW4=="}, 401, invalidToken},
		{"known", []string{"Bearer " + op}, 200, ""},
		{"known, lower case, spaces", []string{"bearer    " + op}, 200, ""},
		{"known outside b64token", []string{"Bearer " + bang}, 200, ""},
		{"no token", []string{"Bearer"}, 400, invalidRequest},
		{"no token after the space", []string{"Bearer   "}, 400, invalidRequest},
		{"two tokens", []string{"Bearer " + op + " " + op}, 400, invalidRequest},
		{"a tab before the token", []string{"Bearer\t" + op}, 400, invalidRequest},
		{"a tab in the token", []string{"Bearer " + op + "\tx"}, 400, invalidRequest},
		{"a colon after the scheme", []string{"Bearer: " + op}, 400, invalidRequest},
		{"a quoted token", []string{`Bearer "` + op + `"`}, 400, invalidRequest},
		{"unknown outside b64token", []string{"Bearer not!a-token-anyone-has-0123456789"}, 400, invalidRequest},
		{"= inside", []string{"Bearer abc=def"}, 400, invalidRequest},
		{"only padding", []string{"Bearer =="}, 400, invalidRequest},
		{"the token alone", []string{op + "/="}, 400, invalidRequest},
		{"empty", []string{""}, 400, invalidRequest},
		{"twice", []string{"Bearer " + op, "Bearer " + op}, 400, invalidRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := f.svc.callCount()
			r := httptest.NewRequest("GET", "/v1/isps", nil)
			for _, v := range c.header {
				r.Header.Add("Authorization", v)
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != c.status || w.Header().Get("WWW-Authenticate") != c.auth {
				t.Fatalf("%d, WWW-Authenticate %q (%s); want %d, %q", w.Code, w.Header().Get("WWW-Authenticate"), w.Body, c.status, c.auth)
			}
			if c.status == 200 {
				return
			}
			if f.svc.callCount() != before {
				t.Error("the Service was called for a refused request")
			}
			p := decodeProblem(t, w)
			want := map[int]string{400: "malformed-authorization", 401: "unauthorized"}[c.status]
			if p.Type != ProblemTypePrefix+want {
				t.Errorf("problem %s (%s), want %s", p.Type, p.Detail, want)
			}
			// The token is not echoed back.
			if strings.Contains(p.Detail, op) || strings.Contains(p.Detail, "anyone-has") {
				t.Errorf("the detail quotes the token: %s", p.Detail)
			}
		})
	}
}
