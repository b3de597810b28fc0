package portal

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/tenants"
)

const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Handler is the HTTPS handler: the page at every path, POST /claim,
// /done, /portal.css and the RFC 8908 API at /api/captive.
func (s *Server) Handler() http.Handler {
	s.handlerOnce.Do(func() {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /", s.serveChoose)
		mux.HandleFunc("GET /done", s.serveDone)
		mux.HandleFunc("GET /portal.css", serveCSS)
		mux.HandleFunc("GET /favicon.ico", http.NotFound)
		mux.HandleFunc("GET /api/captive", s.serveAPI)
		cop := http.NewCrossOriginProtection()
		cop.SetDenyHandler(http.HandlerFunc(s.serveCrossOrigin))
		mux.Handle("POST /claim", cop.Handler(http.HandlerFunc(s.serveClaim)))
		s.handler = s.secure(mux)
	})
	return s.handler
}

// secure sets the headers every answer carries, sends requests for
// another host to the portal's, and caps the requests in flight per
// source address.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		if !strings.EqualFold(hostOnly(r.Host), s.host) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, s.url, http.StatusFound)
				return
			}
			s.message(w, http.StatusMisdirectedRequest, "Wrong address", "This form was sent to another address. Open "+s.url+" and try again.")
			return
		}
		if a, ok := sourceAddr(r); ok {
			if !s.inflight.acquire(a) {
				s.st.busy.Add(1)
				h.Set("Retry-After", "1")
				s.message(w, http.StatusTooManyRequests, "Too many requests", "This device sent too many requests at once. Wait a moment and try again.")
				return
			}
			defer s.inflight.release(a)
		}
		next.ServeHTTP(w, r)
	})
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// sourceAddr is the request's source address (the connection's, never a
// header's).
func sourceAddr(r *http.Request) (source, bool) {
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return sourceOf(r.RemoteAddr, la)
}

// sourceOf is the source of a connection from remote to local (nil: the
// port is unknown); false if remote is no address and port (the source
// then has the port only).
func sourceOf(remote string, local net.Addr) (source, bool) {
	var src source
	if local != nil {
		if l, err := netip.ParseAddrPort(local.String()); err == nil {
			src.port = l.Port()
		}
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return src, false
	}
	src.addr = ap.Addr().Unmap().WithZone("")
	return src, true
}

// source is who a request comes from: its address and the portal's local
// port it reached (the port names the ISP of a bound subscriber: two ISPs'
// subscribers may share an address, never a port and an address).
type source struct {
	addr netip.Addr
	port uint16
}

// lookup finds the request's subscriber from its connection: the local
// address and port (the portal's; the port says the ISP of a bound
// subscriber) and the source address, never a header.
func (s *Server) lookup(r *http.Request) (Subscriber, bool) {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return Subscriber{}, false
	}
	var local netip.AddrPort
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local, _ = netip.ParseAddrPort(la.String())
	}
	unmap := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
	}
	return s.dir.Lookup(unmap(local), unmap(remote))
}

// subscriber finds the request's subscriber, or answers 403.
func (s *Server) subscriber(w http.ResponseWriter, r *http.Request) (Subscriber, bool) {
	sub, ok := s.lookup(r)
	if !ok {
		s.st.unknownSource.Add(1)
		s.render(w, http.StatusForbidden, page{Heading: "Not available here",
			Lead: []string{"This page is only for devices joining this network through it."}})
		return Subscriber{}, false
	}
	return sub, true
}

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(css)
}

// serveChoose is GET of any path: the form, or the handover's progress
// for a device that has chosen and not yet switched (the form again with
// ?again=1, its link: the choice corrected before the switch).
func (s *Server) serveChoose(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscriber(w, r)
	if !ok {
		return
	}
	if sub.Claimed != "" && r.URL.Query().Get("again") != "1" {
		s.serveClaimed(w, r, sub)
		return
	}
	if sub.Fixed {
		// Its claim would be refused after the password (a portal
		// trial): said at once instead.
		s.render(w, http.StatusOK, s.fixedPage(sub.ISP))
		return
	}
	nonce := ensureNonce(w, r)
	// Choosing again: the form holds the choice made, to be corrected.
	in := formInput{ISP: sub.Claimed, CustomerID: sub.ClaimedCustomerID}
	s.render(w, http.StatusOK, s.choosePage(s.token(purposeForm, sub.MAC, nonce), sub.ISP, sub.Suspended, in, problems{}))
}

// serveDone is the page after a claim (POST, redirect, GET): what the
// Directory says now, or the claim just made while the Directory does not
// show it yet.
//
// ?reload=off renders it without reloading itself (a screen reader read
// the page again at every reload: the pages that reload offer the link).
func (s *Server) serveDone(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscriber(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("reload") == "off" {
		w = noReload{w}
	}
	recent, hasRecent := s.recent.get(sub.MAC, time.Now())
	switch {
	case sub.Claimed != "":
		s.serveClaimed(w, r, sub)
	case hasRecent && recent != sub.ISP:
		s.render(w, http.StatusOK, s.pendingPage(recent, sub.ISP, s.wait(sub)))
	case sub.ISP != "":
		s.render(w, http.StatusOK, s.connectedPage(sub.ISP))
	default:
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

// noReload is a ResponseWriter whose pages render does not make reload
// themselves (serveDone's ?reload=off).
type noReload struct{ http.ResponseWriter }

// serveClaimed is the page of a device that chose an ISP and is not on it
// yet: switching (pendingPage), asking again (retryPage: a retry asked
// for by a claim again, due at sub.Retry), or back in the walled garden because its ISP did not
// take it (failedPage, with the claim form to correct the choice or ask
// for a retry).
func (s *Server) serveClaimed(w http.ResponseWriter, r *http.Request, sub Subscriber) {
	if !handoverFailed(sub) {
		wait := s.wait(sub)
		if sub.ISP == "" && !sub.Retry.IsZero() {
			// A retry asked for, its outcome not known yet.
			s.render(w, http.StatusOK, s.retryPage(sub.Claimed, wait+max(time.Until(sub.Retry), 0)))
			return
		}
		s.render(w, http.StatusOK, s.pendingPage(sub.Claimed, sub.ISP, wait))
		return
	}
	nonce := ensureNonce(w, r)
	s.render(w, http.StatusOK, s.failedPage(sub, s.token(purposeForm, sub.MAC, nonce), formInput{ISP: sub.Claimed, CustomerID: sub.ClaimedCustomerID}, problems{}))
}

func (s *Server) serveCrossOrigin(w http.ResponseWriter, r *http.Request) {
	s.st.crossOrigin.Add(1)
	s.log.Debug("portal: cross-origin request refused", "from", r.RemoteAddr, "origin", r.Header.Get("Origin"),
		"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
	s.message(w, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was refused. Open the page again and retry.")
}

// serveClaim is POST /claim: the claim form, or the first step of a move
// (the confirmation page), or its confirmation (?confirm=1).
func (s *Server) serveClaim(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscriber(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
			w.Header().Set("Connection", "close")
			s.message(w, http.StatusRequestEntityTooLarge, "Form too large", "The form sent was too large. Open the page again and retry.")
			return
		}
		s.message(w, http.StatusBadRequest, "Form not readable", "The form sent could not be read. Open the page again and retry.")
		return
	}
	// Only the body's fields: never the query's, never a MAC.
	in := formInput{
		ISP:        r.PostForm.Get("isp"),
		CustomerID: strings.TrimSpace(r.PostForm.Get("customer_id")),
		Password:   r.PostForm.Get("password"),
		Replace:    strings.TrimSpace(r.PostForm.Get("replace")),
	}
	if in.Replace != "" && r.PostForm.Get("replace_for") != replaceFor(in) {
		// Offered for another customer (the user corrected the customer
		// ID or the ISP since): not this claim's.
		in.Replace = ""
	}
	// A device on an ISP moves (confirmation first); one that has chosen
	// and not yet switched claims again (the same choice is idempotent),
	// also one back in the walled garden because its ISP did not take it
	// (another customer ID or ISP: its handover is then the new one's;
	// the same: its handover is retried at once, see claim).
	cur := sub.ISP
	moving := cur != ""
	confirming := moving && r.URL.Query().Get("confirm") == "1"
	nonce, hasNonce := cookieNonce(r)
	want := s.token(purposeForm, sub.MAC, nonce)
	if confirming {
		want = s.token(purposeConfirm, sub.MAC, nonce, in.ISP, in.CustomerID)
	}
	if !hasNonce {
		// Not a stale form: the browser keeps no cookie of the portal's
		// (cookies refused), and opening the page again cannot help.
		s.st.badToken.Add(1)
		s.message(w, http.StatusForbidden, "Cookies needed", "Your browser sent this form without the cookie this page set, which shows the form is yours. Allow cookies for this page, then open it again and retry.")
		return
	}
	if !tokenOK(r.PostForm.Get("token"), want) {
		s.st.badToken.Add(1)
		s.message(w, http.StatusForbidden, "This form has expired", "This form has expired. Open the page again and retry.")
		return
	}
	formToken := s.token(purposeForm, sub.MAC, nonce)
	again := func(status int, pr problems) {
		switch {
		case confirming:
			s.render(w, status, s.confirmPage(want, sub, in, pr))
		case handoverFailed(sub):
			s.render(w, status, s.failedPage(sub, formToken, in, pr))
		default:
			s.render(w, status, s.choosePage(formToken, cur, sub.Suspended, in, pr))
		}
	}
	if fields := s.check(in, !moving || confirming); len(fields) > 0 {
		again(http.StatusBadRequest, fieldProblems(fields))
		return
	}
	if moving && !confirming {
		// The move's first step: nothing is claimed, the password (if
		// any was sent) is not used; the confirmation asks for it.
		s.render(w, http.StatusOK, s.confirmPage(s.token(purposeConfirm, sub.MAC, nonce, in.ISP, in.CustomerID), sub, in, problems{}))
		return
	}
	s.claim(w, r, sub, in, confirming, again)
}

// check validates the form's fields: field → message.
func (s *Server) check(in formInput, needPassword bool) map[string]string {
	m := map[string]string{}
	if _, ok := s.isps[in.ISP]; !ok {
		m["isp"] = "Choose your Internet provider."
	}
	switch {
	case in.CustomerID == "":
		m["customer_id"] = "Enter your customer ID."
	case len(in.CustomerID) > maxCustomerID:
		m["customer_id"] = "The customer ID is too long. Check it and try again."
	}
	if needPassword {
		switch {
		case in.Password == "":
			m["password"] = "Enter your password."
		case len(in.Password) > maxPassword:
			m["password"] = "The password is too long. Check it and try again."
		}
	}
	return m
}

// circuit is the circuit sub's claims are limited on: its own, else its
// access entry's (one port and VLAN).
func circuit(sub Subscriber) string {
	if sub.Circuit != "" {
		return sub.Circuit
	}
	return "access " + sub.Access
}

// claim calls the Claimer and answers with /done or the form again.
func (s *Server) claim(w http.ResponseWriter, r *http.Request, sub Subscriber, in formInput, confirming bool, again func(int, problems)) {
	id := requestID()
	mac := binding.MACString(sub.MAC)
	_, err := s.claims.Claim(r.Context(), tenants.Actor{Kind: tenants.ActorPortal, Name: "portal", RequestID: id},
		tenants.ClaimRequest{ISP: in.ISP, CustomerID: in.CustomerID, Password: in.Password, MAC: mac, Access: sub.Access, Replace: in.Replace,
			Circuit: circuit(sub)})
	logArgs := []any{"mac", mac, "access", sub.Access, "isp", in.ISP, "from_isp", sub.ISP, "request_id", id}
	outcome := func(o string, extra ...any) {
		level := slog.LevelInfo
		if o == "rate-limited" {
			level = slog.LevelDebug // a guessing loop's attempts: counted, not each logged
		}
		s.log.Log(r.Context(), level, "portal claim", append(append(logArgs, "outcome", o), extra...)...)
	}
	// The field a credentials problem points to: on the confirmation
	// page the customer ID is not a field.
	credField, credFields := "customer_id", map[string]string{"customer_id": "Check the customer ID.", "password": "Enter the password again."}
	if confirming {
		credField, credFields = "password", map[string]string{"password": "Enter the password again."}
	}
	var rl *tenants.RateLimitError
	var dl *tenants.DeviceLimitError
	name := s.displayName(in.ISP)
	switch {
	case err == nil:
		s.st.claimsOK.Add(1)
		// The customer ID is logged on success only: a failed attempt's
		// may be a password typed in the wrong field.
		// Back in the walled garden: the same claim again (the user had
		// the ISP fix it) asks for the handover's retry now; another
		// one's handover is at once anyway.
		retry := handoverFailed(sub) && s.dir.RetryHandover(sub)
		outcome("ok", "customer_id", in.CustomerID, "handover_retry", retry)
		s.recent.put(sub.MAC, in.ISP, time.Now())
		http.Redirect(w, r, "/done", http.StatusSeeOther)
	case errors.Is(err, tenants.ErrBadCredentials):
		s.st.claimsRefused.Add(1)
		outcome("bad-credentials")
		// 403, not 401: a form's credentials are no HTTP
		// authentication, and a 401 must name a scheme to answer it
		// with (RFC 9110 §15.5.2: WWW-Authenticate) that the browser
		// would prompt for.
		again(http.StatusForbidden, sentence("The customer ID or password is not right. Check them and try again.", credField, credFields))
	case errors.As(err, &rl) || errors.Is(err, tenants.ErrRateLimited):
		s.st.claimsLimited.Add(1)
		wait := time.Minute
		if rl != nil {
			wait = rl.RetryAfter
		}
		secs := max(1, int((wait+time.Second-1)/time.Second))
		outcome("rate-limited", "retry_after_s", secs)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		msg := "Too many attempts. Wait " + plural(secs, "second") + " and try again."
		if rl != nil && rl.Busy {
			// Not this device's attempts: another device's claim for
			// the customer was being checked at that moment.
			msg = "Another device is signing in with this customer right now. Wait " + plural(secs, "second") + " and try again."
		}
		again(http.StatusTooManyRequests, sentence(msg, "", nil))
	case errors.As(err, &dl) && len(dl.Replaceable) > 0:
		// The password was right (the limit is checked after it): the
		// owner may replace one of its devices by this one, as an
		// installer's claim may (replace); the one replaced loses its
		// service.
		s.st.claimsFailed.Add(1)
		outcome("device-limit")
		pr := sentence("This customer already has "+plural(len(dl.Devices), "device")+" connected, the most it may. To connect this one, "+
			"choose a device it replaces (that device loses its connection at "+name+") and enter the password again. Or ask "+name+" to allow more devices.", "replace-0",
			map[string]string{"password": "Enter the password again."})
		pr.Replace = dl.Replaceable // not the configuration's (read-only)
		again(http.StatusConflict, pr)
	case errors.Is(err, tenants.ErrDeviceLimit):
		// None to replace here: the configuration's, the operator's.
		s.st.claimsFailed.Add(1)
		outcome("device-limit")
		again(http.StatusConflict, sentence("This customer already has the most devices it may connect, and none can be replaced from this page. Ask "+name+" to allow more devices, or the network operator.", "", nil))
	case errors.Is(err, tenants.ErrSuspended):
		s.st.claimsFailed.Add(1)
		outcome("suspended")
		again(http.StatusConflict, sentence("This customer's service is suspended, so this device cannot connect with it. Ask "+name+".", "", nil))
	case errors.Is(err, tenants.ErrNoRoom):
		// A device new to the box, refused for want of a place (the
		// box's maximum, or the ISP's share of it): nothing is being
		// moved, and the operator, not the subscriber, makes room.
		s.st.claimsFailed.Add(1)
		outcome("no-room", "err", err.Error())
		again(http.StatusConflict, sentence("This network has no room for another device just now, so this one cannot connect. Ask "+name+" or the network operator.", "", nil))
	case errors.Is(err, tenants.ErrConflict):
		s.st.claimsFailed.Add(1)
		outcome("conflict", "err", err.Error())
		again(http.StatusConflict, sentence("This device cannot be moved here from this page. Ask the network operator to move it.", "", nil))
	case errors.Is(err, tenants.ErrInvalid):
		s.st.claimsFailed.Add(1)
		outcome("invalid", "err", err.Error())
		again(http.StatusBadRequest, sentence("The details sent cannot be used. Check the customer ID and try again.", "", nil))
	default:
		s.st.claimsFailed.Add(1)
		s.log.Error("portal claim", append(logArgs, "outcome", "error", "err", err.Error())...)
		again(http.StatusInternalServerError, sentence("Something went wrong on our side. Try again in a minute.", "", nil))
	}
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "portal-" + hex.EncodeToString(b[:])
}

// captive is the RFC 8908 API's answer. It has no seconds-remaining: that
// is the time until a client that is not captive becomes captive (§5), to
// be left out for a captive one, and a subscriber bound at an ISP has no
// session the portal ends.
type captive struct {
	Captive       bool   `json:"captive"`
	UserPortalURL string `json:"user-portal-url"`
}

// serveAPI is the RFC 8908 API (its URI is in DHCP option 114). A
// subscriber bound at an ISP is not captive, also while it waits to be
// handed over to another ISP it chose (it is online at the first until
// then); a device in the walled garden, or one ispmux does not know, is.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.st.api.Add(1)
	ans := captive{Captive: true, UserPortalURL: s.url}
	if sub, ok := s.lookup(r); ok && sub.ISP != "" {
		ans.Captive = false
	}
	b, _ := json.Marshal(ans)
	w.Header().Set("Content-Type", "application/captive+json")
	w.Header().Set("Cache-Control", "private")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}
