package webhooks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// Delivery parameters.
const (
	// RequestTimeout bounds one attempt: connect, TLS, request, answer.
	RequestTimeout = 10 * time.Second
	// ShutdownGrace is how long an attempt in flight when Run's context
	// ends may still take (its acknowledgement is then stored).
	ShutdownGrace = 2 * time.Second
	// MinBackoff is the first retry's delay (before jitter).
	MinBackoff = time.Second
	// batch is how many events a worker reads from the store at a time.
	batch = 256
	// maxLag caps the count behind Status.Lag (the log keeps 100 000).
	maxLag = 1 << 20
)

// Status is one ISP's webhook delivery state.
type Status struct {
	ISP string `json:"isp"`
	// URL is the receiver as configs.WebhookShown shows it (scheme and
	// host; a path, a query and user info may hold a credential).
	URL string `json:"url"`
	// Cursor is the ISP's own sequence number (subscribers.Event.ISPSeq)
	// up to which its events are delivered: its receiver acknowledged
	// every one of them up to Cursor.
	Cursor uint64 `json:"cursor"`
	// Lag is the number of this ISP's events after Cursor, not yet
	// acknowledged: those the log holds, and those it trimmed before
	// they were delivered (they go as one events-lost message). Before,
	// only the first: a receiver down past the log's hold showed lag 0
	// while its events were being lost (a trial).
	Lag int `json:"lag"`
	// Attempts is the number of failed attempts at the event being
	// delivered now (0 when the last attempt succeeded).
	Attempts int `json:"attempts"`
	// LastError is the last failed attempt's error and LastErrorTime its
	// time (both kept after a success: Attempts says whether delivery is
	// failing now).
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// NextAttempt is when the failing event is tried again.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Delivered counts acknowledged messages, Failures failed attempts,
	// Lost the events-lost messages sent (since the process started).
	Delivered uint64 `json:"delivered_total"`
	Failures  uint64 `json:"failures_total"`
	Lost      uint64 `json:"lost_total"`
}

// Manager runs one delivery worker per ISP with a webhook_url.
type Manager struct {
	store *subscribers.Store
	log   *slog.Logger

	// minBackoff, timeout and shutdownGrace are MinBackoff,
	// RequestTimeout and ShutdownGrace; tests shorten them before Run.
	minBackoff    time.Duration
	timeout       time.Duration
	shutdownGrace time.Duration
	// lookup resolves a webhook_url's host name (net.DefaultResolver's
	// LookupNetIP by default; tests give a name the address they want).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	mu      sync.Mutex
	targets map[string]*target // by ISP: what Reload last set
	order   []string           // ISP names in configuration order
	workers map[string]*worker // running workers (after Run)
	ctx     context.Context    // Run's; nil before Run and after it returns
	wg      sync.WaitGroup
}

// target is where and how an ISP's events go. Immutable once built.
type target struct {
	isp   string
	url   string
	shown string // url as configs.WebhookShown shows it
	// hidden is what of url shown leaves out (hiddenParts), longest
	// first: hidden in what the receiver answers too (hide).
	hidden   []string
	secret   []byte
	retryMax time.Duration
	client   *http.Client
	// same says whether another configuration would build the same
	// target (Reload keeps the connections then).
	key string
}

// New builds the webhook targets of cfg's ISPs (reading the secret and CA
// files: an unreadable or malformed one is an error) and, for an ISP
// whose webhook is configured for the first time, stores its cursor at
// the newest event now (it hears what happens from now on). Nothing is
// sent before Run. log may be nil.
func New(cfg *configs.Config, store *subscribers.Store, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		store:         store,
		log:           log,
		minBackoff:    MinBackoff,
		timeout:       RequestTimeout,
		shutdownGrace: ShutdownGrace,
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		targets: map[string]*target{},
		workers: map[string]*worker{},
	}
	var errs []error
	for _, p := range cfg.ISPs {
		m.order = append(m.order, p.Name)
		if p.WebhookURL == "" {
			continue
		}
		t, err := m.build(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.initCursor(p.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		m.targets[p.Name] = t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.holdLocked()
	return m, nil
}

// holdLocked tells the store which ISPs have a webhook: their receivers'
// unacknowledged events are held in the log past its retention, within
// a bound (Store.HoldEventsFor). m.mu held, or m not yet shared.
func (m *Manager) holdLocked() {
	isps := make([]string, 0, len(m.targets))
	for isp := range m.targets {
		isps = append(isps, isp)
	}
	m.store.HoldEventsFor(isps)
}

// initCursor stores isp's cursor at the newest event if it has none.
func (m *Manager) initCursor(isp string) error {
	if _, ok, err := m.store.WebhookCursor(isp); err != nil || ok {
		return err
	}
	last, err := m.store.LastEventSeqOf(isp)
	if err != nil {
		return err
	}
	if err := m.store.SetWebhookCursor(isp, last); err != nil {
		return fmt.Errorf("webhook %s: %w", isp, err)
	}
	return nil
}

// ReadCA reads a webhook_ca_file: the PEM certificates the receiver's
// certificate must chain to, as a pool and as read. A file without one is
// an error.
func ReadCA(path string) (*x509.CertPool, []byte, error) {
	ca, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, ca, nil
}

// build makes the target of ISP p (p.WebhookURL set).
func (m *Manager) build(p configs.ISP) (*target, error) {
	u, err := url.Parse(p.WebhookURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error quotes the whole URL
		}
		return nil, fmt.Errorf("isp %s webhook_url: %w", p.Name, err)
	}
	secret, err := ReadSecret(p.WebhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("isp %s webhook_secret_file: %w", p.Name, err)
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	var ca []byte
	if p.WebhookCAFile != "" {
		if tlsc.RootCAs, ca, err = ReadCA(p.WebhookCAFile); err != nil {
			return nil, fmt.Errorf("isp %s webhook_ca_file: %w", p.Name, err)
		}
	}
	retryMax := p.WebhookRetryMaxDur
	if retryMax <= 0 {
		retryMax = configs.DefaultWebhookRetryMax
	}
	tr := &http.Transport{
		Proxy:                 nil, // never the environment's
		DialContext:           m.dial(&net.Dialer{Timeout: m.timeout, KeepAlive: 30 * time.Second}),
		TLSClientConfig:       tlsc,
		TLSHandshakeTimeout:   m.timeout,
		ResponseHeaderTimeout: m.timeout,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &target{
		isp:      p.Name,
		url:      p.WebhookURL,
		shown:    configs.WebhookShown(u),
		hidden:   hiddenParts(u),
		secret:   secret,
		retryMax: retryMax,
		client: &http.Client{
			Transport: tr,
			Timeout:   m.timeout,
			// A redirect is an answer like any other non-2xx: not
			// followed (the event would go where the operator did not
			// configure it), retried.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		key: fmt.Sprintf("%s\x00%s\x00%x\x00%x\x00%s", p.WebhookURL, secret, ca, p.WebhookCAFile, retryMax),
	}, nil
}

// hiddenParts is what of webhook URL u configs.WebhookShown leaves out,
// as a receiver might echo it, longest first (so that a part within
// another is hidden with it): its user name and password, its path and
// query whole (as sent and unescaped), and each path segment and query
// value. A segment or value shorter than 4 bytes is left out: it is no
// credential, and hiding it would garble the receiver's answer.
func hiddenParts(u *url.URL) []string {
	var out []string
	add := func(s string, short bool) {
		if len(s) >= 4 || short && s != "" && s != "/" {
			out = append(out, s)
		}
	}
	if u.User != nil {
		add(u.User.Username(), false)
		if pw, ok := u.User.Password(); ok {
			add(pw, true)
		}
	}
	add(u.Opaque, true)
	add(u.EscapedPath(), true)
	add(u.Path, true)
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		add(seg, false)
		if v, err := url.PathUnescape(seg); err == nil {
			add(v, false)
		}
	}
	add(u.RawQuery, true)
	for kv := range strings.SplitSeq(u.RawQuery, "&") {
		_, v, _ := strings.Cut(kv, "=")
		add(v, false)
		if uv, err := url.QueryUnescape(v); err == nil {
			add(uv, false)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(out)
}

// dial returns the DialContext of a target's transport: d's, except that
// a host name (the receiver's name in webhook_url) is resolved here and
// an address internalAddr refuses is not connected to. The name is
// resolved by DNS its ISP controls, at every connection: pointed at
// 127.0.0.1, at a link-local address (a cloud's metadata service) or at
// one of the box's own, it made the box POST the ISP's events to a
// service on the box or its link, and the webhook's status (last_error:
// connection refused, HTTP 401, a timeout) told the ISP which of the
// box's ports answer. An address written in webhook_url, and localhost
// (never DNS's), are the operator's own choice: dialled as they are.
func (m *Manager) dial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := m.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		own := ownAddrs()
		var refused []string
		var lastErr error
		for _, ip := range ips {
			if why := internalAddr(ip, own); why != "" {
				refused = append(refused, ip.Unmap().String()+" ("+why+")")
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		if lastErr != nil {
			return nil, lastErr
		}
		if len(refused) > 0 {
			return nil, fmt.Errorf("%s resolves to %s: not delivered to (a name in webhook_url must resolve to an address off this box and its link; write the address itself in webhook_url to deliver there)",
				host, strings.Join(refused, ", "))
		}
		return nil, fmt.Errorf("%s resolves to no address", host)
	}
}

// internalAddr says why a webhook receiver's name may not resolve to a
// ("": it may): a loopback, unspecified, link-local or multicast address,
// or one of own (the box's interface addresses).
func internalAddr(a netip.Addr, own []netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, o := range own {
		if o == a {
			return "an address of this box"
		}
	}
	return ""
}

// ownAddrs is the box's interface addresses (in the namespace the
// webhooks are sent from); none if they cannot be read.
func ownAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap().WithZone(""))
		}
	}
	return out
}

// close releases t's idle connections.
func (t *target) close() { t.client.CloseIdleConnections() }

// Run starts the workers and returns when ctx ends and every worker has
// stored its cursor (an attempt in flight gets ShutdownGrace to finish).
// Close the store only after Run returned.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.ctx != nil {
		m.mu.Unlock()
		return errors.New("webhooks: Run called twice")
	}
	m.ctx = ctx
	for _, isp := range m.order {
		if t := m.targets[isp]; t != nil {
			m.startLocked(t)
		}
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	for _, w := range m.workers {
		w.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	m.workers = map[string]*worker{}
	m.mu.Unlock()
	return nil
}

// startLocked starts t's ISP's worker. m.mu held, m.ctx set.
func (m *Manager) startLocked(t *target) {
	w := newWorker(m, t)
	m.workers[t.isp] = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run()
	}()
}

// Reload applies cfg's webhook settings (SIGHUP): secret and CA files are
// read again, a changed URL or back-off cap takes effect at the next
// attempt (a worker waiting to retry tries at once), an ISP that gained a
// webhook_url gets a worker, one that lost it loses its worker (its cursor
// stays in the store). An ISP whose files fail to load keeps what it had;
// the errors are returned.
func (m *Manager) Reload(cfg *configs.Config) error {
	var errs []error
	m.mu.Lock()
	defer m.mu.Unlock()
	m.order = m.order[:0]
	seen := map[string]bool{}
	for _, p := range cfg.ISPs {
		m.order = append(m.order, p.Name)
		seen[p.Name] = true
		old := m.targets[p.Name]
		if p.WebhookURL == "" {
			if old != nil {
				m.stopLocked(p.Name)
				delete(m.targets, p.Name)
				old.close()
				m.log.Info("webhook removed", "isp", p.Name)
			}
			continue
		}
		t, err := m.build(p)
		if err != nil {
			errs = append(errs, &ReloadError{ISP: p.Name, Err: fmt.Errorf("%w (the webhook in force stays)", err)})
			continue
		}
		if old != nil && old.key == t.key {
			t.close()
			continue
		}
		if old == nil {
			if err := m.initCursor(p.Name); err != nil {
				t.close()
				errs = append(errs, &ReloadError{ISP: p.Name, Err: err})
				continue
			}
		}
		m.targets[p.Name] = t
		if w := m.workers[p.Name]; w != nil {
			w.setTarget(t)
		} else if m.ctx != nil && m.ctx.Err() == nil {
			m.startLocked(t)
		}
		if old != nil {
			old.close()
		}
		m.log.Info("webhook configured", "isp", p.Name, "url", t.shown)
	}
	for isp, old := range m.targets {
		if !seen[isp] {
			m.stopLocked(isp)
			delete(m.targets, isp)
			old.close()
		}
	}
	m.holdLocked()
	return errors.Join(errs...)
}

// ReloadError is one ISP's failure in Reload: that ISP keeps the webhook
// it had; the other ISPs' settings were applied.
type ReloadError struct {
	ISP string
	Err error
}

func (e *ReloadError) Error() string { return e.Err.Error() }
func (e *ReloadError) Unwrap() error { return e.Err }

// FailedISPs returns the ISPs whose settings a Reload that returned err
// did not apply (nil if err is nil).
func FailedISPs(err error) map[string]bool {
	var out map[string]bool
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *ReloadError:
			if out == nil {
				out = map[string]bool{}
			}
			out[e.ISP] = true
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

// stopLocked stops isp's worker, if running (it stores its cursor on the
// way out). m.mu held.
func (m *Manager) stopLocked(isp string) {
	if w := m.workers[isp]; w != nil {
		w.cancel()
		delete(m.workers, isp)
	}
}

// Status returns the delivery state of every ISP with a webhook, in
// configuration order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	var out []Status
	var ws []*worker
	for _, isp := range m.order {
		t := m.targets[isp]
		if t == nil {
			continue
		}
		out = append(out, Status{ISP: isp, URL: t.shown})
		ws = append(ws, m.workers[isp])
	}
	m.mu.Unlock()
	for i := range out {
		m.fill(&out[i], ws[i])
	}
	return out
}

// StatusOf returns isp's delivery state; false if isp has no webhook. It
// is what the API's GET /v1/isps/{isp}/webhook shows (api.Server's
// SetWebhookStatus takes this method).
func (m *Manager) StatusOf(isp string) (Status, bool) {
	m.mu.Lock()
	t, w := m.targets[isp], m.workers[isp]
	m.mu.Unlock()
	if t == nil {
		return Status{}, false
	}
	st := Status{ISP: isp, URL: t.shown}
	m.fill(&st, w)
	return st, true
}

// fill completes st from w (nil: not running) and the store.
func (m *Manager) fill(st *Status, w *worker) {
	if w != nil {
		w.mu.Lock()
		url := st.URL
		*st = w.st
		st.URL = url
		w.mu.Unlock()
		st.Cursor = w.acked.Load()
	}
	// A worker that has not read its cursor yet (it starts at 0), or
	// none: the stored cursor. From 0, the lag counted every event of the
	// ISP the log holds, a new webhook's past events included.
	if st.Cursor == 0 {
		if seq, _, err := m.store.WebhookCursor(st.ISP); err == nil {
			st.Cursor = seq
		}
	}
	// The events the log holds after the cursor and those it trimmed
	// before they were delivered (they go as one events-lost message),
	// read at one instant.
	if n, trimmed, err := m.store.WebhookLag(st.ISP, st.Cursor, maxLag); err == nil {
		st.Lag = int(min(uint64(n)+trimmed, maxLag))
	}
}

// Backoff returns the delay before retry number n (n >= 1: after the n-th
// failed attempt): min(base·2^(n-1), max), with jitter: drawn uniformly in
// [d/2, d] by r, a number in [0, 1).
func Backoff(n int, base, max time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}

// jitter is the random source of Backoff.
func jitter() float64 { return rand.Float64() }
