package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/tenants"
)

// Problem is an RFC 9457 problem details object
// (application/problem+json). Type is "urn:ispmux:problem:" and a slug
// (ProblemType lists them); extension members follow the standard ones.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// RetryAfter (seconds) comes with rate-limited and too-many-streams
	// (and Retry-After).
	RetryAfter int `json:"retry_after,omitempty"`
	// Limit and Devices come with device-limit: the customer's devices,
	// one of which a claim may name in replace.
	Limit   int      `json:"limit,omitempty"`
	Devices []string `json:"devices,omitempty"`
}

// challenge is the WWW-Authenticate of a 401 to a request that sent no
// bearer token (RFC 6750 §3: no error code then); invalidToken is the
// one to a request whose token is not known (§3.1: invalid_token). A
// malformed Authorization header is 400, with invalidRequest
// (authheader.go).
// bad-credentials (a claim's customer ID or password) is 403, not 401:
// the request's own credentials, its token, were accepted, and a 401
// tells a client to change them (an OAuth client refreshes its token and
// sends the claim again, the wrong password with it); RFC 9110 §15.5.4's
// 403 is "credentials provided ... insufficient", not to be repeated
// as they are.
const (
	challenge    = `Bearer realm="ispmux"`
	invalidToken = `Bearer realm="ispmux", error="invalid_token", error_description="unknown token"`
)

// ProblemTypePrefix starts every problem type.
const ProblemTypePrefix = "urn:ispmux:problem:"

// Problem type slugs, with their status and title.
var problemTypes = map[string]struct {
	status int
	title  string
}{
	"unauthorized":            {http.StatusUnauthorized, "Missing or invalid bearer token"},
	"malformed-authorization": {http.StatusBadRequest, "Malformed Authorization header"},
	"bad-credentials":         {http.StatusForbidden, "Invalid credentials"},
	"forbidden":               {http.StatusForbidden, "Not allowed for this token"},
	"not-found":               {http.StatusNotFound, "Not found"},
	"method-not-allowed":      {http.StatusMethodNotAllowed, "Method not allowed"},
	"conflict":                {http.StatusConflict, "Conflict"},
	"device-limit":            {http.StatusConflict, "Customer's device limit reached"},
	"device-unavailable":      {http.StatusConflict, "Device registered with another provider"},
	"device-blocked":          {http.StatusConflict, "Device blocked by the operator"},
	"bad-request":             {http.StatusBadRequest, "Bad request"},
	"unsupported-media":       {http.StatusUnsupportedMediaType, "Unsupported media type"},
	"invalid":                 {http.StatusUnprocessableEntity, "Invalid value"},
	"too-large":               {http.StatusRequestEntityTooLarge, "Request body too large"},
	"rate-limited":            {http.StatusTooManyRequests, "Too many attempts"},
	"too-many-streams":        {http.StatusTooManyRequests, "Too many event streams for this token"},
	"unavailable":             {http.StatusServiceUnavailable, "Temporarily unavailable"},
	"internal":                {http.StatusInternalServerError, "Internal error"},
}

// ProblemTypes lists the problem type slugs with their HTTP status.
func ProblemTypes() map[string]int {
	out := make(map[string]int, len(problemTypes))
	for k, v := range problemTypes {
		out[k] = v.status
	}
	return out
}

func newProblem(slug, detail string) *Problem {
	t, ok := problemTypes[slug]
	if !ok {
		panic("api: unknown problem type " + slug)
	}
	return &Problem{Type: ProblemTypePrefix + slug, Title: t.title, Status: t.status, Detail: detail}
}

// writeProblem sends p, with the request id.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.RequestID = w.Header().Get("X-Request-Id")
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		// RFC 9110 §15.5.2: a 401 names the scheme it wants.
		h.Set("WWW-Authenticate", challenge)
	}
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func (s *Server) problem(w http.ResponseWriter, r *http.Request, slug, detail string) {
	writeProblem(w, r, newProblem(slug, detail))
}

// errorProblem maps a tenants (or auth) error to a problem. Messages of
// ErrNotFound, ErrConflict, ErrInvalid and ErrForbidden are shown (the
// Service words them for the caller); others are not.
func errorProblem(err error) *Problem {
	var rl *tenants.RateLimitError
	var dl *tenants.DeviceLimitError
	switch {
	case errors.As(err, &rl):
		p := newProblem("rate-limited", "too many attempts: try again later")
		p.RetryAfter = max(1, int((rl.RetryAfter+time.Second-1)/time.Second))
		return p
	case errors.Is(err, tenants.ErrRateLimited):
		p := newProblem("rate-limited", "too many attempts: try again later")
		p.RetryAfter = 1
		return p
	case errors.As(err, &dl):
		p := newProblem("device-limit", err.Error())
		p.Limit = dl.Limit
		p.Devices = append([]string{}, dl.Devices...)
		return p
	case errors.Is(err, tenants.ErrDeviceLimit):
		return newProblem("device-limit", err.Error())
	case errors.Is(err, tenants.ErrBadCredentials):
		// One message whatever was wrong: customer, password or ISP.
		return newProblem("bad-credentials", "invalid credentials")
	case errors.Is(err, tenants.ErrNotFound):
		return newProblem("not-found", err.Error())
	case errors.Is(err, tenants.ErrDeviceTaken):
		// Worded by the Service for the caller: the holder is named
		// to the operator only.
		return newProblem("device-unavailable", err.Error())
	case errors.Is(err, tenants.ErrBlocked):
		// A MAC the operator blocked while no ISP had it: the
		// operator lifts the block, no attach or claim does.
		return newProblem("device-blocked", err.Error())
	case errors.Is(err, tenants.ErrConflict):
		return newProblem("conflict", err.Error())
	case errors.Is(err, tenants.ErrInvalid), errors.Is(err, auth.ErrBadHash),
		errors.Is(err, auth.ErrHashTooCostly), errors.Is(err, auth.ErrPasswordTooLong):
		return newProblem("invalid", err.Error())
	case errors.Is(err, tenants.ErrForbidden):
		return newProblem("forbidden", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return newProblem("unavailable", "timed out")
	}
	return nil
}

// fail answers err as a problem; an unexpected error is logged with the
// request id and answered 500 without its text.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if p := errorProblem(err); p != nil {
		writeProblem(w, r, p)
		return
	}
	if r.Context().Err() != nil {
		return // the client has gone
	}
	s.log.Error("api request failed", "request_id", w.Header().Get("X-Request-Id"), "route", r.Pattern, "err", err)
	s.problem(w, r, "internal", "internal error (see the log for this request id)")
}
