package api

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/tlsreload"
	"github.com/ispmux/ispmux/tenants"
)

// Limits are the server's timeouts and size caps. New sets DefaultLimits;
// change Server.Limits before Handler or Serve to tune them.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // whole request, body included (not for imports and streams)
	WriteTimeout      time.Duration // whole response (not for imports and streams)
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	MaxBody           int64         // a JSON request body
	MaxImportBody     int64         // a bulk import's NDJSON body
	MaxImportLine     int           // one NDJSON line
	ImportTimeout     time.Duration // read and write deadline of a bulk import
	Heartbeat         time.Duration // comment line on an idle event stream
	StreamWrite       time.Duration // deadline of each write to an event stream
	ShutdownGrace     time.Duration // ServeUntil's wait for requests at ctx end
	// RefuseTimeout bounds the answer to a connection past its
	// source's share (refuseConn): TLS handshake, the 503, and the wait
	// for the client to close.
	RefuseTimeout time.Duration
}

// DefaultLimits are the limits New sets.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		MaxBody:           1 << 20,
		MaxImportBody:     1 << 30,
		MaxImportLine:     64 << 10,
		ImportTimeout:     30 * time.Minute,
		Heartbeat:         15 * time.Second,
		StreamWrite:       30 * time.Second,
		ShutdownGrace:     5 * time.Second,
		RefuseTimeout:     2 * time.Second,
	}
}

// Server is the management API server.
type Server struct {
	// Limits may be changed before Handler or Serve is first called.
	Limits Limits

	cfg    configs.API
	svc    tenants.Service
	tokens *auth.Tokens
	log    *slog.Logger
	cert   *tlsreload.Cert // nil without TLS

	handlerOnce sync.Once
	handler     http.Handler

	reqs requestStats // requests by route and status (stats.go)

	streamsMu sync.Mutex
	streams   map[string]int // open event streams per token
	stop      chan struct{}  // closed at Shutdown: streams end
	stopOnce  sync.Once

	mu  sync.Mutex
	srv *http.Server
	ln  *LimitListener

	// webhookStatus is SetWebhookStatus's function (nil: none).
	webhookStatus atomic.Pointer[WebhookStatusFunc]
}

// New returns a server for the [api] table cfg over svc, authenticating
// with tokens. Nothing is read or opened before Serve (or ServeUntil);
// Reload re-reads the TLS certificate and token files.
func New(cfg configs.API, svc tenants.Service, tokens *auth.Tokens, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		Limits:  DefaultLimits(),
		cfg:     cfg,
		svc:     svc,
		tokens:  tokens,
		log:     log,
		streams: map[string]int{},
		stop:    make(chan struct{}),
	}
	if cfg.TLSCert != "" {
		s.cert = tlsreload.New(tlsreload.Config{Name: "api", CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
	}
	return s
}

// Handler is the API's HTTP handler (the route table on a ServeMux, with
// authentication, request ids and problem details for unknown routes).
func (s *Server) Handler() http.Handler {
	s.handlerOnce.Do(func() { s.handler = s.buildMux() })
	return s.handler
}

// socketKey marks a request that came over the control socket.
type socketKey struct{}

// SocketHandler serves the same routes to the appliance's control socket
// (a unix socket only root can open, mode 0600): every request there acts
// as the operator ("socket"), without a token, so `ispmux ctl --socket`
// works on the box without the operator's token or a valid config.
func (s *Server) SocketHandler() http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), socketKey{}, true)))
	})
}

func (s *Server) buildMux() http.Handler {
	mux := http.NewServeMux()
	methods := map[string][]string{}
	for _, rt := range routes {
		mux.Handle(rt.Method+" "+rt.Path, s.wrap(rt))
		methods[rt.Path] = append(methods[rt.Path], rt.Method)
	}
	// Other methods on a known path: 405 as a problem, with Allow.
	for path, ms := range methods {
		allow := strings.Join(ms, ", ")
		if strings.Contains(allow, "GET") {
			allow += ", HEAD"
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			s.answerOther(w, r, "method-not-allowed", fmt.Sprintf("%s is not allowed here (allowed: %s)", r.Method, allow), allow)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.answerOther(w, r, "not-found", "no such endpoint (see docs/API.md)", "")
	})
	// A path not in canonical form (an empty or dot segment, a trailing
	// slash): 404 as a problem, naming the canonical one. ServeMux would
	// answer it with a redirect to that path and an HTML body (a trial's
	// //v1/isps: 307), which an API client should not follow with its
	// token, nor parse.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); p != "/" && path.Clean(p) != p {
			s.answerOther(w, r, "not-found", fmt.Sprintf("no such endpoint: %q is not a canonical path (%q may be the one meant)", p, path.Clean(p)), "")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// answerOther answers a request no route takes with the problem typ,
// detail (and an Allow header of allow, if not ""), its request id set and
// its answer counted as RouteOther's. A request without a token the box
// knows is answered as on any route (401, or 400 for a malformed
// header) before that, and one with a claim token as on any route but
// its own (403 forbidden): a 404 or 405 would tell a caller without a
// token, or an installer with a claim token, which paths are routes.
func (s *Server) answerOther(w http.ResponseWriter, r *http.Request, typ, detail, allow string) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	setRequestID(sw, r)
	defer func() { s.reqs.record(RouteOther, sw.code(), time.Since(start)) }()
	if r.Context().Value(socketKey{}) == nil {
		p, _, ok := s.authenticate(sw, r)
		if !ok {
			return
		}
		if p.Kind == auth.KindClaim {
			s.problem(sw, r, "forbidden", claimOnly)
			return
		}
	}
	if allow != "" {
		sw.Header().Set("Allow", allow)
	}
	s.problem(sw, r, typ, detail)
}

// call is what a handler knows about its request.
type call struct {
	p     auth.Principal
	actor tenants.Actor
	// isp is the ISP the request is scoped to: the {isp} of a tenant
	// route, or "" (all ISPs) on an operator route.
	isp string
	// tok is the bearer token presented ("" on the control socket): an
	// event stream checks it is still known (rotation ends its streams).
	tok string
}

func setRequestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if !ValidRequestID(id) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set("X-Request-Id", id)
	return id
}

// ValidRequestID accepts a client's id of 1..64 characters from
// [A-Za-z0-9._:-] (it goes into events and logs as it is): the ids the API
// records, and so the ones ctl events --request-id can find.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// claimOnly is the detail of the 403 a claim token gets on any path but
// its route, whether another route's or none.
const claimOnly = "a claim token may only POST /v1/claims"

// wrap authenticates, checks the scope, builds the actor and calls the
// route's handler.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := setRequestID(w, r)
		sw := &statusWriter{ResponseWriter: w}
		// Counted last, after a panic's problem response too.
		defer func() { s.reqs.record(rt.Method+" "+rt.Path, sw.code(), time.Since(start)) }()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api handler panic", "request_id", id, "route", rt.Method+" "+rt.Path, "panic", fmt.Sprint(v))
				if sw.status == 0 {
					s.problem(sw, r, "internal", "internal error (see the log for this request id)")
				}
			}
		}()
		c, ok := s.authorize(sw, r, rt, id)
		if ok && s.queryOK(sw, r, rt) {
			rt.h(s, sw, r, c)
		}
		s.log.Debug("api", "request_id", id, "route", rt.Method+" "+rt.Path, "status", sw.code(),
			"principal", c.p.Name, "kind", string(c.p.Kind), "duration", time.Since(start))
	})
}

// queryOK answers 400 bad-request for a query string that does not parse
// (a bad %-escape, a semicolon): url.Query drops such a pair as if it
// were absent, and a dropped after= would read the events again from the
// oldest kept, a list from its first page. It answers the same for a
// parameter the route does not take (rt.Query): a typo such as ?afer=
// or ?cursor= would be read as no parameter, the first page again; and
// for one given twice.
func (s *Server) queryOK(w http.ResponseWriter, r *http.Request, rt Route) bool {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.problem(w, r, "bad-request", fmt.Sprintf("malformed query string: %v", err))
		return false
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if slices.Contains(rt.Query, k) {
			if len(q[k]) > 1 {
				// The handlers read the first: limit=1&limit=1000 was
				// a page of one, silently.
				s.problem(w, r, "bad-request", fmt.Sprintf("query parameter %q given %d times: give it once", k, len(q[k])))
				return false
			}
			continue
		}
		takes := "no query parameters"
		if len(rt.Query) > 0 {
			takes = "only " + strings.Join(rt.Query, ", ")
		}
		s.problem(w, r, "bad-request", fmt.Sprintf("unknown query parameter %q: %s %s takes %s", k, rt.Method, rt.Path, takes))
		return false
	}
	return true
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rt Route, id string) (*call, bool) {
	c := &call{}
	if r.Context().Value(socketKey{}) != nil {
		c.p = auth.Principal{Kind: auth.KindOperator, Name: "socket"}
		c.actor = tenants.Actor{Kind: tenants.ActorOperator, Name: "socket", RequestID: id}
		if rt.Scope == ScopeTenant {
			isp := r.PathValue("isp")
			if !s.svc.HasISP(isp) {
				s.problem(w, r, "not-found", fmt.Sprintf("no ISP named %q", isp))
				return c, false
			}
			c.isp = isp
		}
		return c, true
	}
	p, tok, ok := s.authenticate(w, r)
	if !ok {
		return c, false
	}
	c.p, c.tok = p, tok
	c.actor = tenants.Actor{Kind: tenants.ActorKind(p.Kind), Name: p.Name, ISP: p.ISP, RequestID: id}
	switch rt.Scope {
	case ScopeOperator:
		if p.Kind != auth.KindOperator {
			s.problem(w, r, "forbidden", "this endpoint is the operator's")
			return c, false
		}
	case ScopeISPs:
		switch p.Kind {
		case auth.KindOperator:
		case auth.KindISP:
			c.isp = p.ISP
		default:
			s.problem(w, r, "forbidden", claimOnly)
			return c, false
		}
	case ScopeClaim:
		if p.Kind != auth.KindOperator && p.Kind != auth.KindClaim {
			s.problem(w, r, "forbidden", "claims need a claim token (an ISP attaches devices with POST /v1/isps/{isp}/devices)")
			return c, false
		}
	case ScopeTenant:
		isp := r.PathValue("isp")
		switch p.Kind {
		case auth.KindOperator:
			if !s.svc.HasISP(isp) {
				s.problem(w, r, "not-found", fmt.Sprintf("no ISP named %q", isp))
				return c, false
			}
		case auth.KindISP:
			// Another ISP's path is answered as one that does not
			// exist: never 403, which would tell that it does.
			if isp != p.ISP {
				s.problem(w, r, "not-found", "not found")
				return c, false
			}
		default:
			s.problem(w, r, "forbidden", claimOnly)
			return c, false
		}
		c.isp = isp
	}
	return c, true
}

// authenticate returns the principal of the request's bearer token and
// the token, or answers the problem and returns false. RFC 6750 §3.1: a
// malformed header is 400 invalid_request; no bearer token 401 with the
// challenge alone; an unknown one 401 invalid_token. A known token is
// accepted whatever its characters (bearer).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, string, bool) {
	tok, malformed := bearer(r)
	p, ok := s.tokens.Lookup(tok)
	switch {
	case ok:
		return p, tok, true
	case malformed != "":
		w.Header().Set("WWW-Authenticate", invalidRequest)
		s.problem(w, r, "malformed-authorization", malformed)
	case tok == "":
		s.problem(w, r, "unauthorized", "send Authorization: Bearer <token>")
	default:
		w.Header().Set("WWW-Authenticate", invalidToken)
		s.problem(w, r, "unauthorized", "unknown token")
	}
	return auth.Principal{}, "", false
}

// statusWriter remembers the status sent. It forwards Flush and Unwrap so
// http.ResponseController reaches the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// ServeUntil serves the API on ln, a listener already open on [api]
// listen (it closes it: the appliance opens it before it touches an
// interface, so that an address in use stops the start there), until ctx
// ends, then shuts down (open requests get Limits.ShutdownGrace). It
// returns nil after a shutdown, or the error that stopped it (a
// certificate that does not load included: Serve's).
func (s *Server) ServeUntil(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.Limits.ShutdownGrace)
	defer cancel()
	err := s.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// Serve serves the API on ln (wrapped in a LimitListener of [api]
// max_connections, and in TLS when tls_cert is set) until Shutdown; it
// then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.loadCert(); err != nil {
		ln.Close()
		return err
	}
	l := s.Limits
	lln := NewLimitListener(ln, max(1, s.cfg.MaxConnections))
	var protos http.Protocols
	protos.SetHTTP1(true) // one request per connection at a time: the connection cap means what it says
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		Protocols:         &protos,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(s.stopStreams)
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		lln.Close()
		return errors.New("api: Serve called twice")
	}
	s.srv, s.ln = srv, lln
	s.mu.Unlock()
	var refuseTLS *tls.Config
	if s.cert != nil {
		refuseTLS = s.cert.TLSConfig()
		refuseTLS.NextProtos = []string{"http/1.1"}
	}
	lln.Refuse = refuseConn(refuseTLS, l.RefuseTimeout)
	var err error
	if s.cert != nil {
		srv.TLSConfig = s.cert.TLSConfig()
		s.log.Info("api serving", "addr", ln.Addr().String(), "tls", true)
		err = srv.ServeTLS(lln, "", "")
	} else {
		s.log.Info("api serving", "addr", ln.Addr().String(), "tls", false)
		err = srv.Serve(lln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr is the address Serve listens on (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting, ends event streams and waits (until ctx ends)
// for the other requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopStreams()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// stillValid reports whether the token of c is still one of the known
// tokens, for the same principal (true on the control socket): a stream
// opened with a token rotated out since ends.
func (s *Server) stillValid(c *call) bool {
	if c.tok == "" {
		return true
	}
	p, ok := s.tokens.Lookup(c.tok)
	return ok && p == c.p
}

func (s *Server) stopStreams() { s.stopOnce.Do(func() { close(s.stop) }) }

// ReloadCert re-reads the TLS certificate and key (after SIGHUP); the
// token files are the caller's to re-read (the appliance's reload gives
// the Tokens the new configuration's list). A pair that fails to load is
// kept as it was.
func (s *Server) ReloadCert() error {
	if s.cert == nil {
		return nil
	}
	return s.cert.Load()
}

// Connections is the number of open API connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return 0
	}
	return s.ln.Open()
}

// ConnectionsRefused is the number of API connections refused, past
// their source's share (LimitListener.Refused): answered 503 (refuseConn),
// or closed at once when maxRefusing were being answered.
func (s *Server) ConnectionsRefused() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return 0
	}
	return s.ln.Refused()
}

func (s *Server) loadCert() error {
	if s.cert == nil || s.cert.Loaded() {
		return nil
	}
	return s.cert.Load()
}

// acquireStream counts one more stream for the token; false at the cap.
func (s *Server) acquireStream(key string) bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams[key] >= max(1, s.cfg.MaxStreamsPerToken) {
		return false
	}
	s.streams[key]++
	return true
}

func (s *Server) releaseStream(key string) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams[key]--; s.streams[key] <= 0 {
		delete(s.streams, key)
	}
}
