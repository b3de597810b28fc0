package api

import (
	"fmt"
	"net/http"
	"strings"
)

// invalidRequest is the WWW-Authenticate of the 400 to a request whose
// Authorization header is malformed (RFC 6750 §3.1: invalid_request).
// error_description's characters are RFC 6750 §3's: no quote, no
// backslash.
const invalidRequest = `Bearer realm="ispmux", error="invalid_request", error_description="malformed Authorization header"`

// bearer reads the request's Authorization header as RFC 6750 §2.1's
// credentials: "Bearer", one or more spaces, and one b64token (letters,
// digits, "-._~+/", then "=" padding). It returns the token (""
// without one) and, when the header is malformed, why (malformed != ""):
// given twice or empty, a scheme that is not an RFC 9110 token (a tab
// before the token, a colon), "Bearer" with no token or with more than
// one, or a token with characters outside b64token. A header of another
// scheme (Basic) is no bearer token and not malformed: the client did
// not know to send one (RFC 6750 §3: no error code then).
//
// A token outside b64token is returned with its reason: a token file may
// hold any printable ASCII without blanks (auth.ReadTokenFile), and such
// a token, known to the box, is still accepted (authorize looks it up
// first); an unknown one is the malformed request it is.
func bearer(r *http.Request) (tok, malformed string) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", ""
	case len(vals) > 1:
		return "", fmt.Sprintf("Authorization given %d times: send it once, as Authorization: Bearer <token>", len(vals))
	}
	h := strings.Trim(vals[0], " \t")
	if h == "" {
		return "", "Authorization is empty: send Authorization: Bearer <token>"
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !isToken(scheme) {
		return "", "malformed Authorization header: send Authorization: Bearer <token> (the word Bearer, a space, the token)"
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ""
	}
	tok = strings.TrimLeft(rest, " ")
	switch {
	case tok == "":
		return "", "Authorization: Bearer without a token: send Authorization: Bearer <token>"
	case strings.ContainsAny(tok, " \t"):
		return "", "Authorization: Bearer with more than one token (or a token with a blank in it): send one token"
	case !isB64Token(tok):
		return tok, "the bearer token has characters that no bearer token has (RFC 6750 §2.1: letters, digits, - . _ ~ + /, then = padding): check it for a stray quote or character"
	}
	return tok, ""
}

// isToken reports whether s is an RFC 9110 §5.6.2 token (an
// authentication scheme's syntax): one or more tchars.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isB64Token reports whether s is RFC 6750 §2.1's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}
