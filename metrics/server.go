package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/configs"
)

// Server limits.
const (
	maxConnections    = 16
	maxScrapes        = 4 // scrapes served at once; more get 503
	scrapeTimeout     = 10 * time.Second
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
	shutdownGrace     = 5 * time.Second
)

// Handler serves c, with the Go runtime's and the process's collectors,
// as GET (and HEAD) /metrics; every other path is 404, every other method
// 405. A collector that fails is reported in the response and the rest is
// still served.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             scrapeTimeout,
	}))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET /metrics", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found: ispmux serves GET /metrics only here", http.StatusNotFound)
	})
	return mux
}

// Serve serves h on cfg.Listen until ctx ends, then shuts down (open
// scrapes get a few seconds). With cfg.TLSCert it serves TLS 1.2 or later,
// the certificate and key re-read when their files change (no restart, no
// signal: checked at each new connection). It returns nil at once when
// metrics are off (cfg.Listen empty), nil after a shutdown, or the error
// that stopped it (the listen address in use, an unreadable certificate at
// start).
func Serve(ctx context.Context, cfg configs.Metrics, h http.Handler, log *slog.Logger) error {
	if !cfg.Enabled() {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return ServeListener(ctx, ln, cfg, h, log)
}

// ServeListener is Serve on a listener already open (it closes it).
func ServeListener(ctx context.Context, ln net.Listener, cfg configs.Metrics, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cert *certFiles
	if cfg.TLSCert != "" {
		cert = &certFiles{cert: cfg.TLSCert, key: cfg.TLSKey, log: log}
		if err := cert.load(); err != nil {
			ln.Close()
			return err
		}
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		Protocols:         &protos,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	lln := api.NewLimitListener(ln, maxConnections)
	errc := make(chan error, 1)
	go func() {
		var err error
		if cert != nil {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.get}
			log.Info("metrics serving", "addr", ln.Addr().String(), "tls", true)
			err = srv.ServeTLS(lln, "", "")
		} else {
			log.Info("metrics serving", "addr", ln.Addr().String(), "tls", false)
			err = srv.Serve(lln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// certFiles serves the certificate last loaded and loads it again when
// the files change (a renewal writes new files; a broken pair keeps the
// old certificate and is logged once).
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu     sync.Mutex
	cur    *tls.Certificate
	stamp  []byte // the files' sizes and times when cur was loaded
	failed []byte // the stamp of a pair that failed to load
}

// stamp identifies the files' current contents cheaply (size, mtime).
func (c *certFiles) stampNow() []byte {
	var b []byte
	for _, f := range []string{c.cert, c.key} {
		fi, err := os.Stat(f)
		if err != nil {
			b = append(b, "missing;"...)
			continue
		}
		b = fmt.Appendf(b, "%d,%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b
}

func (c *certFiles) load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked(c.stampNow())
}

func (c *certFiles) loadLocked(stamp []byte) error {
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		c.failed = stamp
		return fmt.Errorf("metrics tls: %w", err)
	}
	c.cur, c.stamp, c.failed = &cert, stamp, nil
	return nil
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stampNow(); !bytes.Equal(s, c.stamp) && !bytes.Equal(s, c.failed) {
		if err := c.loadLocked(s); err != nil {
			c.log.Warn("metrics: new TLS certificate not loaded; serving the previous one", "err", err)
		} else {
			c.log.Info("metrics: TLS certificate reloaded", "file", c.cert)
		}
	}
	return c.cur, nil
}
