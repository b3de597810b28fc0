package metrics

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn.
func writeCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serve runs ServeListener on a loopback port; it returns the address and
// a function that stops it and returns Serve's result.
func serve(t *testing.T, cfg configs.Metrics) (string, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeListener(ctx, ln, cfg, Handler(New(newFake(2))), nil) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return ln.Addr().String(), stop
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServePlain(t *testing.T) {
	addr, stop := serve(t, configs.Metrics{Listen: "127.0.0.1:0"})
	code, body := get(t, http.DefaultClient, "http://"+addr+"/metrics")
	if code != 200 || !strings.Contains(body, "ispmux_dhcp_exchanges_total{isp=\"isp1\",outcome=\"ack\"} 4") {
		t.Fatalf("%d %.200s", code, body)
	}
	if code, _ := get(t, http.DefaultClient, "http://"+addr+"/status"); code != 404 {
		t.Errorf("/status: %d", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TLS: served with the certificate; a new certificate written over the
// files is served to the next connection; a broken one keeps the old.
func TestServeTLSReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "m.crt"), filepath.Join(dir, "m.key")
	if err := ServeListener(context.Background(), mustListen(t), configs.Metrics{Listen: "x", TLSCert: cf, TLSKey: kf}, Handler(New(&fake{})), nil); err == nil {
		t.Fatal("served without a certificate")
	}
	writeCert(t, cf, kf, "first")
	addr, _ := serve(t, configs.Metrics{Listen: "127.0.0.1:0", TLSCert: cf, TLSKey: kf})
	peer := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := peer(); cn != "first" {
		t.Fatalf("serving %q", cn)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, _ := get(t, c, "https://"+addr+"/metrics"); code != 200 {
		t.Fatalf("https: %d", code)
	}
	if code, _ := get(t, http.DefaultClient, "http://"+addr+"/metrics"); code == 200 {
		t.Fatal("plain HTTP answered on a TLS port")
	}
	// Renewal: new files (a later mtime).
	time.Sleep(10 * time.Millisecond)
	writeCert(t, cf, kf, "second")
	if cn := peer(); cn != "second" {
		t.Fatalf("after renewal serving %q", cn)
	}
	// A broken key: the previous certificate stays.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(kf, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cn := peer(); cn != "second" {
		t.Fatalf("after a broken key serving %q", cn)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
