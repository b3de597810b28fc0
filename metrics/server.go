package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/tlsreload"
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

// ServeListener serves h on ln (the appliance opens it at start, so that
// an address in use stops the start before any interface is touched)
// until ctx ends, then shuts down (open scrapes get a few seconds) and
// closes ln. With cfg.TLSCert it serves TLS 1.2 or later, the certificate
// and key re-read when their files change (no restart, no signal: checked
// at each new connection). It returns nil after a shutdown, or the error
// that stopped it (an unreadable certificate at start).
func ServeListener(ctx context.Context, ln net.Listener, cfg configs.Metrics, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cert *tlsreload.Cert
	if cfg.TLSCert != "" {
		cert = tlsreload.New(tlsreload.Config{Name: "metrics", CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Watch: true, Log: log})
		if err := cert.Load(); err != nil {
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
			srv.TLSConfig = cert.TLSConfig()
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
