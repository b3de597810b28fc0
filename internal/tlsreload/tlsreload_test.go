package tlsreload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate named cn and its key, and
// sets both files' modification time to mtime (so a rewrite is seen as a
// change whatever the file system's time resolution).
func writeCert(t *testing.T, certFile, keyFile, cn string, mtime time.Time) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mtime)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), mtime)
}

func writeFile(t *testing.T, name string, b []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func files(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	return filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
}

// served is the common name GetCertificate hands to a handshake.
func served(t *testing.T, c *Cert) string {
	t.Helper()
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.Subject.CommonName
}

func TestMissingFileAtStart(t *testing.T) {
	cf, kf := files(t)
	c := New(Config{Name: "test", CertFile: cf, KeyFile: kf})
	err := c.Load()
	if err == nil || !strings.HasPrefix(err.Error(), "test tls: ") || !strings.Contains(err.Error(), cf) {
		t.Fatalf("Load without the certificate file: %v", err)
	}
	if c.Loaded() {
		t.Fatal("Loaded after a failed Load")
	}
	if _, err := c.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("GetCertificate served without a certificate")
	}
	// The certificate there, the key missing: the key file is named.
	writeCert(t, cf, kf, "one", time.Now())
	if err := os.Remove(kf); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(); err == nil || !strings.Contains(err.Error(), kf) {
		t.Fatalf("Load without the key file: %v", err)
	}
	// Both there but not a pair: both named.
	writeFile(t, kf, []byte("not a key"), time.Now())
	if err := c.Load(); err == nil || !strings.Contains(err.Error(), cf) || !strings.Contains(err.Error(), kf) {
		t.Fatalf("Load of a broken key: %v", err)
	}
}

// Without Watch, a pair replaced on disk is served after Load, not
// before; a broken pair fails Load and the one in use stays.
func TestLoad(t *testing.T) {
	cf, kf := files(t)
	t0 := time.Now().Add(-time.Hour)
	writeCert(t, cf, kf, "one", t0)
	c := New(Config{Name: "test", CertFile: cf, KeyFile: kf})
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, c); got != "one" {
		t.Fatalf("serving %q", got)
	}
	writeCert(t, cf, kf, "two", t0.Add(time.Minute))
	if got := served(t, c); got != "one" {
		t.Fatalf("changed before Load: %q", got)
	}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, c); got != "two" {
		t.Fatalf("after Load: %q", got)
	}
	writeFile(t, cf, []byte("junk"), t0.Add(2*time.Minute))
	if err := c.Load(); err == nil {
		t.Fatal("Load of a broken certificate succeeded")
	}
	if got := served(t, c); got != "two" {
		t.Fatalf("after a failed Load: %q", got)
	}
}

// With Watch, a pair replaced on disk is served to the next handshake; a
// broken one keeps the pair in use and is logged once; a good one written
// after it is loaded.
func TestWatch(t *testing.T) {
	cf, kf := files(t)
	t0 := time.Now().Add(-time.Hour)
	writeCert(t, cf, kf, "one", t0)
	log := &recorder{}
	c := New(Config{Name: "test", CertFile: cf, KeyFile: kf, Watch: true, Log: slog.New(log)})
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, c); got != "one" {
		t.Fatalf("serving %q", got)
	}
	if n := log.count(); n != 0 {
		t.Fatalf("%d log lines without a change", n)
	}
	writeCert(t, cf, kf, "two", t0.Add(time.Minute))
	if got := served(t, c); got != "two" {
		t.Fatalf("after renewal: %q", got)
	}
	if n := log.countLevel(slog.LevelInfo); n != 1 {
		t.Fatalf("%d info lines after a reload", n)
	}
	writeFile(t, kf, []byte("not a key"), t0.Add(2*time.Minute))
	for range 3 {
		if got := served(t, c); got != "two" {
			t.Fatalf("after a broken key: %q", got)
		}
	}
	if n := log.countLevel(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings for one broken pair", n)
	}
	writeCert(t, cf, kf, "three", t0.Add(3*time.Minute))
	if got := served(t, c); got != "three" {
		t.Fatalf("after a repair: %q", got)
	}
}

// TLSConfig serves the pair over TLS 1.2 or later.
func TestTLSConfig(t *testing.T) {
	cf, kf := files(t)
	writeCert(t, cf, kf, "one", time.Now())
	c := New(Config{Name: "test", CertFile: cf, KeyFile: kf})
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	handshake := func(maxVersion uint16) (string, error) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		srv := tls.Server(a, c.TLSConfig())
		go func() { _ = srv.HandshakeContext(context.Background()); srv.Close() }()
		cl := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion})
		if err := cl.HandshakeContext(context.Background()); err != nil {
			return "", err
		}
		return cl.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := handshake(0); err != nil || cn != "one" {
		t.Fatalf("handshake: %q %v", cn, err)
	}
	if _, err := handshake(tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

type recorder struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.levels = append(r.levels, rec.Level)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.levels)
}

func (r *recorder) countLevel(l slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.levels {
		if x == l {
			n++
		}
	}
	return n
}
