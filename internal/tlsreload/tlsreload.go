// Package tlsreload owns the serving certificate of ispmux's TLS
// listeners (the API, the metrics endpoint, the portal): it loads a PEM
// certificate chain and key pair from files, hands the pair last loaded
// to every TLS handshake, and loads the files again when asked (Load,
// after SIGHUP) or, for a Cert built with Watch, when they change on disk
// (checked at each handshake). A pair that fails to load never replaces
// the one in use.
package tlsreload

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// Config says which files a Cert reads and how.
type Config struct {
	// Name is the server's name: errors read "<Name> tls: ..." and
	// Watch's log lines "<Name>: ...".
	Name string
	// CertFile and KeyFile are the PEM certificate chain and key.
	CertFile, KeyFile string
	// Watch: each handshake compares the files' sizes and modification
	// times with those of the pair in use and, when they differ, loads
	// the files again (a pair that fails is logged once and not retried
	// until the files change again). Without Watch only Load reads them.
	Watch bool
	// Log receives Watch's reloads and failures (nil = discard).
	Log *slog.Logger
}

// Cert is a certificate and key pair loaded from files. It serves nothing
// before the first successful Load.
type Cert struct {
	cfg Config
	cur atomic.Pointer[tls.Certificate]

	mu     sync.Mutex // serialises loads
	stamp  []byte     // the files' sizes and times when cur was loaded
	failed []byte     // the stamp of a pair that failed to load
}

// New returns a Cert for cfg; no file is read before Load.
func New(cfg Config) *Cert {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Cert{cfg: cfg}
}

// Load reads the certificate and key now. On error the pair in use (if
// any) stays, and the error names the file that could not be read or the
// pair that could not be parsed.
func (c *Cert) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked(c.stampNow())
}

// Loaded reports whether a pair has been loaded.
func (c *Cert) Loaded() bool { return c.cur.Load() != nil }

// GetCertificate is the tls.Config.GetCertificate of the pair last loaded
// (with Watch, loaded again first if the files changed).
func (c *Cert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.cfg.Watch {
		c.mu.Lock()
		if s := c.stampNow(); !bytes.Equal(s, c.stamp) && !bytes.Equal(s, c.failed) {
			if err := c.loadLocked(s); err != nil {
				c.cfg.Log.Warn(c.cfg.Name+": new TLS certificate not loaded; serving the previous one", "err", err)
			} else {
				c.cfg.Log.Info(c.cfg.Name+": TLS certificate reloaded", "file", c.cfg.CertFile)
			}
		}
		c.mu.Unlock()
	}
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New(c.cfg.Name + " tls: no certificate loaded")
}

// TLSConfig is the server configuration of ispmux's TLS listeners: TLS 1.2
// or later, serving c.
func (c *Cert) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

func (c *Cert) loadLocked(stamp []byte) error {
	cert, err := c.read()
	if err != nil {
		c.failed = stamp
		return fmt.Errorf("%s tls: %w", c.cfg.Name, err)
	}
	c.cur.Store(&cert)
	c.stamp, c.failed = stamp, nil
	return nil
}

// read is tls.LoadX509KeyPair with the files named in a parse error too
// (a read error names its file already).
func (c *Cert) read() (tls.Certificate, error) {
	certPEM, err := os.ReadFile(c.cfg.CertFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(c.cfg.KeyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s, %s: %w", c.cfg.CertFile, c.cfg.KeyFile, err)
	}
	return cert, nil
}

// stampNow identifies the files' current contents cheaply (size, mtime).
func (c *Cert) stampNow() []byte {
	var b []byte
	for _, f := range []string{c.cfg.CertFile, c.cfg.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			b = append(b, "missing;"...)
			continue
		}
		b = fmt.Appendf(b, "%d,%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b
}
