package configs

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Metrics is the [metrics] table: the Prometheus endpoint (package
// metrics). Off unless Listen is set.
type Metrics struct {
	// Listen is host:port; "" (the default) serves no metrics.
	Listen string `toml:"listen"`
	// TLSCert and TLSKey are PEM files (absolute paths), both or neither;
	// re-read on SIGHUP.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Insecure allows a non-loopback Listen without TLS.
	Insecure bool `toml:"insecure"`
}

// Enabled reports whether metrics are served.
func (m Metrics) Enabled() bool { return m.Listen != "" }

// metrics checks [metrics] by the rule of [api]: a listen address that is
// not loopback needs TLS (or insecure = true).
func (v *validator) metrics() {
	m := &v.cfg.Metrics
	switch {
	case m.TLSCert != "" && m.TLSKey == "":
		v.errorf("metrics.tls_key", "missing: tls_cert is set, tls_key must be too")
	case m.TLSCert == "" && m.TLSKey != "":
		v.errorf("metrics.tls_cert", "missing: tls_key is set, tls_cert must be too")
	}
	for _, f := range []struct{ key, p string }{{"metrics.tls_cert", m.TLSCert}, {"metrics.tls_key", m.TLSKey}} {
		if f.p != "" && !filepath.IsAbs(f.p) {
			v.errorf(f.key, "must be an absolute path, got %q", f.p)
		}
	}
	l := m.Listen
	if l == "" {
		return // off
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		v.errorf("metrics.listen", "must be host:port (e.g. \"127.0.0.1:9400\"), got %q", l)
		return
	}
	if strings.ContainsAny(host, " \t") {
		v.errorf("metrics.listen", "bad host %q", host)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf("metrics.listen", "port must be a number in 1..65535, got %q", port)
		return
	}
	if l == v.cfg.API.Listen {
		v.errorf("metrics.listen", "%q is the API's address too ([api] listen): give metrics their own port", l)
		return
	}
	if m.TLSCert == "" && !m.Insecure && !IsLoopbackHost(host) && !v.c.failed("metrics.tls_cert") && !v.c.failed("metrics.tls_key") {
		v.errorf("metrics.listen", "%q is not a loopback address: serving metrics there needs tls_cert and tls_key (or insecure = true to serve them in clear text)", l)
	}
}
