package portal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/internal/tlsreload"
	"github.com/ispmux/ispmux/tenants"
)

// ISP is one Internet provider the portal offers.
type ISP struct {
	Name        string // the ISP's name in the configuration (what a claim carries)
	DisplayName string // shown to the subscriber ("" = Name)
	Description string // shown under the name ("" = none)
}

// Subscriber is what the caller knows of the device behind a source
// address.
type Subscriber struct {
	MAC     uint64     // internal/binding.MACString formats it
	Access  string     // the access entry name
	Addr    netip.Addr // its address as the portal sees it (source address)
	ISP     string     // current ISP name; "" while onboarding
	Expires time.Time  // onboarding lease end (or the binding's); zero = unknown
	// Circuit is where its frames come in: its access port and VLAN
	// ("eth1/100", the DHCP proxy's circuit). The claim limits count its
	// claims, and the MACs a guesser makes up there, against it
	// (tenants.ClaimLimits); "": unknown, its Access is its circuit.
	Circuit string
	// ClientLeaseEnd is, for a bound subscriber, when the lease ispmux
	// last gave the device runs out (zero: unknown): it asks again, and
	// so moves to another ISP it chose, before then.
	ClientLeaseEnd time.Time
	Claimed        string // ISP chosen and waiting for the handover, "" if none
	// Suspended is, for a device in the walled garden, the ISP whose
	// customer it is and which suspended that customer ("" if none): the
	// garden serves it so that it may choose another ISP.
	Suspended string
	// ClaimedCustomerID is the customer ID the device is registered to
	// at Claimed (what the claim gave), "" if unknown.
	ClaimedCustomerID string
	// HandoverFailed says why the device, which chose Claimed, is back
	// in the walled garden: Claimed refused it (HandoverRefused), did
	// not answer it (HandoverUnanswered), or one of the two
	// (HandoverNotTaken); "" if it is not.
	HandoverFailed string
	// Retry is when the device is handed over to Claimed again (with
	// HandoverFailed; zero: unknown). Without HandoverFailed: when the
	// retry asked for (Directory.RetryHandover) is due, its outcome not
	// known yet (zero: none asked, or now).
	Retry time.Time
	// Fixed says the device is the operator's configuration's (a
	// [[subscriber]] entry): the portal cannot move it to another ISP
	// (a claim is refused), so it does not offer to.
	Fixed bool
}

// Why a device that chose an ISP is back in the walled garden
// (Subscriber.HandoverFailed).
const (
	HandoverRefused    = "refused"
	HandoverUnanswered = "unanswered"
	// HandoverNotTaken: it refused it or did not answer, which is not
	// known (the failure was before ispmux last started).
	HandoverNotTaken = "failed"
)

// Directory finds the subscriber behind a connection: local is the
// portal's address and port the connection reached (for a bound subscriber
// the port says its ISP, since ISP address plans overlap), remote the
// subscriber's source address and port (its onboarding lease, or its
// binding at that ISP).
//
// RetryHandover asks for the device sub, back in the walled garden
// because its handover to sub.Claimed failed, to be handed over again at
// its next DHCP message (a claim again from the failure page succeeded:
// with the same ISP and customer ID nothing else changed); until that
// retry's outcome is known Lookup gives no HandoverFailed (the retry's
// time in Retry). False: nothing to retry (the claim changed the device's
// registration, whose handover is then at once anyway, say).
type Directory interface {
	Lookup(local, remote netip.AddrPort) (Subscriber, bool)
	RetryHandover(sub Subscriber) bool
}

// Claimer attaches a device to a customer given the customer's password;
// *tenants.Tenants satisfies it.
type Claimer interface {
	Claim(ctx context.Context, a tenants.Actor, r tenants.ClaimRequest) (tenants.Device, error)
}

// Config is the portal's configuration.
type Config struct {
	// Hostname is the portal's name (an optional :port allowed):
	// https://Hostname/ is the user portal URL, and requests for another
	// host are sent there.
	Hostname string
	// ISPs are offered in this order.
	ISPs []ISP
	// CertFile and KeyFile are the PEM certificate chain and key, read by
	// New and re-read by Reload.
	CertFile, KeyFile string
	// HandoverHint is how long the device takes to switch after a claim
	// (onboarding T1 and a few seconds), shown on the page; 0 = 1 minute.
	HandoverHint time.Duration
	// MoveHint is how long a bound device takes to switch to another ISP
	// after a move on the portal (half the client lease and a few
	// seconds); 0 = HandoverHint. MoveHintNow, if set, gives it at each
	// page instead (client_lease_max changes with a reload, and leases
	// given under a longer one run on: dhcpproxy's LeaseMax).
	MoveHint    time.Duration
	MoveHintNow func() time.Duration
	// Log receives claims and errors (nil = discard).
	Log *slog.Logger
}

// Stats are the portal's counters since New.
type Stats struct {
	Pages             uint64 // HTML pages served over HTTPS, any status
	Redirects         uint64 // HTTP requests sent to https://Hostname/
	InsecureRefused   uint64 // non-GET requests over HTTP refused unread
	API               uint64 // RFC 8908 API answers
	ClaimsOK          uint64
	ClaimsRefused     uint64 // wrong customer ID or password
	ClaimsRateLimited uint64 // refused by the claim path's limits
	ClaimsFailed      uint64 // other claim errors (device limit, conflict, invalid, internal)
	CrossOrigin       uint64 // cross-origin POSTs refused
	BadToken          uint64 // POSTs without cookie or with a token not of this subscriber
	UnknownSource     uint64 // requests from an address the Directory does not know
	Busy              uint64 // refused: too many requests in flight from one address
	ConnsRefused      uint64 // connections closed at once: too many from one address, or in all
}

// Limits of the HTTP servers.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	maxBody           = 8 << 10 // a form
	maxInFlight       = 8       // requests at once from one source address
	shutdownGrace     = 5 * time.Second
	defaultHandover   = time.Minute
	maxCustomerID     = 64   // tenants' limit
	maxPassword       = 1024 // tenants' limit
)

// Server is the portal: New builds it, Serve runs it.
type Server struct {
	cfg    Config
	url    string // https://Hostname/
	host   string // Hostname without port, lower case
	dir    Directory
	claims Claimer
	log    *slog.Logger
	isps   map[string]ISP
	secret [32]byte // token key, random at New
	cert   *tlsreload.Cert
	tmpl   *template.Template

	handlerOnce sync.Once
	handler     http.Handler
	serving     atomic.Bool
	limits      atomic.Pointer[connLimits] // Serve's (tests read its counts)

	inflight inflight
	recent   recentClaims
	st       counters
}

type counters struct {
	pages, redirects, insecure, api                      atomic.Uint64
	claimsOK, claimsRefused, claimsLimited, claimsFailed atomic.Uint64
	crossOrigin, badToken, unknownSource, busy           atomic.Uint64
	connsRefused                                         atomic.Uint64
}

// New checks cfg, loads the certificate and returns the portal. Nothing
// is served before Serve.
func New(cfg Config, dir Directory, claims Claimer) (*Server, error) {
	if dir == nil || claims == nil {
		return nil, errors.New("portal: a Directory and a Claimer are needed")
	}
	u, err := url.Parse("https://" + cfg.Hostname + "/")
	if cfg.Hostname == "" || err != nil || u.Host != cfg.Hostname || u.User != nil || u.Path != "/" || u.Hostname() == "" {
		return nil, fmt.Errorf("portal: hostname %q is not a host name (with an optional :port)", cfg.Hostname)
	}
	if len(cfg.ISPs) == 0 {
		return nil, errors.New("portal: no ISP to offer")
	}
	if cfg.HandoverHint <= 0 {
		cfg.HandoverHint = defaultHandover
	}
	if cfg.MoveHint <= 0 {
		cfg.MoveHint = cfg.HandoverHint
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, url: u.String(), host: strings.ToLower(u.Hostname()), dir: dir, claims: claims,
		log: cfg.Log, isps: map[string]ISP{}, tmpl: pageTemplate,
		cert: tlsreload.New(tlsreload.Config{Name: "portal", CertFile: cfg.CertFile, KeyFile: cfg.KeyFile})}
	s.cfg.ISPs = make([]ISP, len(cfg.ISPs))
	for i, p := range cfg.ISPs {
		if p.Name == "" {
			return nil, errors.New("portal: an ISP without a name")
		}
		if _, dup := s.isps[p.Name]; dup {
			return nil, fmt.Errorf("portal: ISP %q twice", p.Name)
		}
		if p.DisplayName == "" {
			p.DisplayName = p.Name
		}
		s.cfg.ISPs[i] = p
		s.isps[p.Name] = p
	}
	s.inflight.n = map[source]int{}
	s.recent.m = map[uint64]recentClaim{}
	s.recent.ttl = cfg.HandoverHint + 10*time.Minute
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// UserPortalURL is https://Hostname/.
func (s *Server) UserPortalURL() string { return s.url }

// Reload re-reads the certificate and key (after SIGHUP); the next TLS
// handshake serves them. On error the pair in use is kept.
func (s *Server) Reload() error { return s.cert.Load() }

// Stats reads the counters.
func (s *Server) Stats() Stats {
	c := &s.st
	return Stats{
		Pages: c.pages.Load(), Redirects: c.redirects.Load(), InsecureRefused: c.insecure.Load(), API: c.api.Load(),
		ClaimsOK: c.claimsOK.Load(), ClaimsRefused: c.claimsRefused.Load(), ClaimsRateLimited: c.claimsLimited.Load(),
		ClaimsFailed: c.claimsFailed.Load(), CrossOrigin: c.crossOrigin.Load(), BadToken: c.badToken.Load(),
		UnknownSource: c.unknownSource.Load(), Busy: c.busy.Load(), ConnsRefused: c.connsRefused.Load(),
	}
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Handshake failures of probes and scanners are not worth more.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Serve serves RedirectHandler on httpL and Handler over TLS on httpsL
// until ctx ends, then shuts both down (open requests get a few seconds)
// and returns nil; or returns the error of a listener that failed, after
// shutting the other down. httpL may be nil (no HTTP redirect). Serve
// closes the listeners and may be called once.
func (s *Server) Serve(ctx context.Context, httpL, httpsL net.Listener) error {
	closeAll := func() {
		if httpL != nil {
			httpL.Close()
		}
		if httpsL != nil {
			httpsL.Close()
		}
	}
	if httpsL == nil {
		closeAll()
		return errors.New("portal: no HTTPS listener")
	}
	if !s.serving.CompareAndSwap(false, true) {
		closeAll()
		return errors.New("portal: Serve called twice")
	}
	type result struct {
		name string
		err  error
	}
	errc := make(chan result, 2)
	limits := newConnLimits(func() { s.st.connsRefused.Add(1) })
	s.limits.Store(limits)
	httpsL = limits.wrap(httpsL)
	if httpL != nil {
		httpL = limits.wrap(httpL)
	}
	secure := s.newHTTPServer(s.Handler())
	secure.TLSConfig = s.cert.TLSConfig()
	servers := []*http.Server{secure}
	go func() { errc <- result{"https", secure.ServeTLS(httpsL, "", "")} }()
	if httpL != nil {
		plain := s.newHTTPServer(s.RedirectHandler())
		servers = append(servers, plain)
		go func() { errc <- result{"http", plain.Serve(httpL)} }()
	}
	s.log.Info("portal serving", "https", httpsL.Addr().String(), "url", s.url)
	running := len(servers)
	var first error
	select {
	case <-ctx.Done():
	case r := <-errc:
		running--
		first = fmt.Errorf("portal %s: %w", r.name, r.err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}
	for ; running > 0; running-- {
		if r := <-errc; first == nil && !errors.Is(r.err, http.ErrServerClosed) {
			first = fmt.Errorf("portal %s: %w", r.name, r.err)
		}
	}
	return first
}

// RedirectHandler is the HTTP listener's handler: GET and HEAD of any URL
// are sent (302) to https://Hostname/, so operating systems' probes land
// on the portal; other methods get 403 without their body being read
// (passwords are only posted over HTTPS).
func (s *Server) RedirectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			s.st.redirects.Add(1)
			http.Redirect(w, r, s.url, http.StatusFound)
			return
		}
		s.st.insecure.Add(1)
		// Closing the connection keeps net/http from draining the body.
		h.Set("Connection", "close")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "Forms are only accepted over HTTPS. Open %s and try again.\n", s.url)
	})
}

// inflight counts requests in flight per source (address and the local
// port it reached).
type inflight struct {
	mu sync.Mutex
	n  map[source]int
}

func (l *inflight) acquire(a source) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[a] >= maxInFlight {
		return false
	}
	l.n[a]++
	return true
}

func (l *inflight) release(a source) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[a]--; l.n[a] <= 0 {
		delete(l.n, a)
	}
}

// recentClaims remembers the ISP of each MAC's last successful claim for a
// while, so /done names it even before the Directory shows it.
type recentClaims struct {
	mu  sync.Mutex
	m   map[uint64]recentClaim
	ttl time.Duration
}

type recentClaim struct {
	isp string
	at  time.Time
}

const maxRecent = 4096

func (r *recentClaims) put(mac uint64, isp string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRecent {
		for k, v := range r.m {
			if now.Sub(v.at) > r.ttl {
				delete(r.m, k)
			}
		}
		for k := range r.m {
			if len(r.m) < maxRecent {
				break
			}
			delete(r.m, k)
		}
	}
	r.m[mac] = recentClaim{isp, now}
}

func (r *recentClaims) get(mac uint64, now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[mac]
	if !ok || now.Sub(c.at) > r.ttl {
		return "", false
	}
	return c.isp, true
}
