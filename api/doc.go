// Package api is ispmux's management API: HTTP/1.1 (over TLS unless the
// listen address is loopback or [api] insecure = true), JSON, under /v1,
// served on [api] listen and never on a data port. It is a thin layer over
// tenants.Service: it authenticates bearer tokens (package auth), maps the
// principal to a scope, decodes and checks requests, and turns errors into
// RFC 9457 problem details. docs/API.md describes every endpoint and
// docs/openapi.yaml is its OpenAPI 3.1 description; a test holds that file
// against the route table here (Routes).
//
// Scopes:
//
//   - the operator's token may call everything;
//   - an ISP's token may call /v1/isps (its own entry only) and the routes
//     under /v1/isps/{isp}/ of its own ISP; another ISP's path answers 404
//     not-found, exactly as an ISP that does not exist (a tenant cannot
//     learn which other tenants exist); operator-only routes answer 403;
//   - a claim token may only POST /v1/claims (403 elsewhere);
//   - no token, or one that is unknown (or rotated out), is 401, with
//     WWW-Authenticate: Bearer (error="invalid_token" when a token was
//     presented); nothing else is 401 (a claim's wrong password is 403
//     bad-credentials: the token was accepted);
//   - a malformed Authorization header (Bearer with no token or two, a
//     token outside RFC 6750's b64token that is not a known token, the
//     header given twice) is 400 malformed-authorization, with
//     WWW-Authenticate: Bearer error="invalid_request" (RFC 6750 §3.1).
//
// Every request has an id (X-Request-Id, echoed when the client sent a
// sane one, generated otherwise) that goes into the tenants.Actor of the
// change it makes, with the principal's kind, name and ISP.
//
// The server limits what one client can cost: header, read, write and idle
// timeouts, a cap on header size, on request bodies (413 beyond), on open
// connections (LimitListener: each source address its share, so that one
// client holding connections open does not keep the others out; one past
// it is answered 503 without its request being read, refuseConn) and on
// event streams per token (429).
// Event streams (Server-Sent Events) are exempt from the server's read and
// write timeouts; each of their writes has its own deadline instead, so a
// reader that stalls is dropped.
package api
