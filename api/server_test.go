package api

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// serve runs the fixture's server on a loopback port.
func (f *fixture) serve() string {
	f.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			f.t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			f.t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

type sseEvent struct {
	id, event, data string
	comment         bool
}

// sseReader reads one SSE message at a time.
type sseReader struct{ br *bufio.Reader }

func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.id != "" || ev.event != "" || ev.data != "" || ev.comment {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			ev.comment = true
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

func (f *fixture) stream(ctx context.Context, addr, path, who, lastID string) (*http.Response, *sseReader) {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens[who])
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, &sseReader{bufio.NewReader(resp.Body)}
}

func TestSSE(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits.Heartbeat = 100 * time.Millisecond
	f.srv.Limits.WriteTimeout = 300 * time.Millisecond // streams must outlive it
	f.srv.Limits.ReadTimeout = 300 * time.Millisecond
	addr := f.serve()
	for i := range 4 {
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: []string{"alpha", "beta"}[i%2]}) // 1..4
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Resume after 1: the operator gets 2, 3, 4, then live ones.
	resp, sr := f.stream(ctx, addr, "/v1/events/stream", "operator", "1")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	expect := func(sr *sseReader, id, kind string) tenants.Event {
		t.Helper()
		for {
			ev, err := sr.next()
			if err != nil {
				t.Fatalf("waiting for id %s: %v", id, err)
			}
			if ev.comment {
				continue // a position or heartbeat (its id is a resume point, no event)
			}
			if ev.id != id || ev.event != kind {
				t.Fatalf("got id %q event %q, want %s %s", ev.id, ev.event, id, kind)
			}
			var e tenants.Event
			if kind != "reset" {
				if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
					t.Fatal(err)
				}
			}
			return e
		}
	}
	expect(sr, "2", "bound")
	expect(sr, "3", "bound")
	expect(sr, "4", "bound")
	// Past the server's write and read timeouts, with heartbeats.
	time.Sleep(500 * time.Millisecond)
	f.svc.addEvent(tenants.Event{Kind: "released", ISP: "alpha"}) // 5
	if e := expect(sr, "5", "released"); e.Seq != 5 || e.ISP != "alpha" {
		t.Fatalf("event %+v", e)
	}
	sawHeartbeat := false
	go func() {
		time.Sleep(250 * time.Millisecond)
		f.svc.addEvent(tenants.Event{Kind: "expired", ISP: "beta"})
	}() // 6
	for {
		ev, err := sr.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment {
			sawHeartbeat = true
			continue
		}
		if ev.id != "6" {
			t.Fatalf("got %+v", ev)
		}
		break
	}
	if !sawHeartbeat {
		t.Fatal("no heartbeat while idle")
	}
	resp.Body.Close()

	// An ISP's stream: only its events; resume with no gap or duplicate.
	resp, sr = f.stream(ctx, addr, "/v1/isps/beta/events/stream", "beta", "2")
	expect(sr, "4", "bound")
	expect(sr, "6", "expired")
	resp.Body.Close()
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha"}) // 7
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta"})  // 8
	resp, sr = f.stream(ctx, addr, "/v1/isps/beta/events/stream", "beta", "6")
	expect(sr, "8", "bound")
	resp.Body.Close()

	// Older than the oldest kept: an explicit reset first, its id the new
	// resume point, then the oldest kept events.
	f.svc.trim(5)
	resp, sr = f.stream(ctx, addr, "/v1/events/stream", "operator", "2")
	expect(sr, "4", "reset")
	expect(sr, "5", "released")
	resp.Body.Close()
	// Resuming right before the oldest kept is no gap: no reset.
	resp, sr = f.stream(ctx, addr, "/v1/events/stream", "operator", "4")
	expect(sr, "5", "released")
	resp.Body.Close()
	// Newer than the log (a restored store): reset to the newest.
	resp, sr = f.stream(ctx, addr, "/v1/events/stream", "operator", "99")
	expect(sr, "8", "reset")
	resp.Body.Close()
	// No Last-Event-ID: live only.
	resp, sr = f.stream(ctx, addr, "/v1/events/stream?", "operator", "")
	time.Sleep(50 * time.Millisecond)
	f.svc.addEvent(tenants.Event{Kind: "blocked"}) // 9
	expect(sr, "9", "blocked")
	resp.Body.Close()
	// ?after= works like Last-Event-ID.
	resp, sr = f.stream(ctx, addr, "/v1/events/stream?after=8", "operator", "")
	expect(sr, "9", "blocked")
	resp.Body.Close()
}

func TestStreamCapAndShutdown(t *testing.T) {
	f := newFixture(t)
	f.srv.cfg.MaxStreamsPerToken = 2
	addr := f.serve()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r1, _ := f.stream(ctx, addr, "/v1/isps/alpha/events/stream", "alpha", "")
	r2, _ := f.stream(ctx, addr, "/v1/isps/alpha/events/stream", "alpha", "")
	r3, _ := f.stream(ctx, addr, "/v1/isps/alpha/events/stream", "alpha", "")
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r3.StatusCode != 429 {
		t.Fatalf("streams: %d %d %d", r1.StatusCode, r2.StatusCode, r3.StatusCode)
	}
	if ra := r3.Header.Get("Retry-After"); ra != "10" {
		t.Errorf("too-many-streams: Retry-After %q, want 10 (as with every 429)", ra)
	}
	r3.Body.Close()
	// Another token has its own count.
	r4, _ := f.stream(ctx, addr, "/v1/events/stream", "operator", "")
	if r4.StatusCode != 200 {
		t.Fatalf("operator stream: %d", r4.StatusCode)
	}
	r1.Body.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r5, _ := f.stream(ctx, addr, "/v1/isps/alpha/events/stream", "alpha", "")
		if r5.StatusCode == 200 {
			defer r5.Body.Close()
			break
		}
		r5.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("a closed stream's slot was not released")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Shutdown ends open streams (the cleanup checks it returns in time).
	start := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	if err := f.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with open streams: %v after %v", err, time.Since(start))
	}
}

func TestConnectionLimit(t *testing.T) {
	f := newFixture(t)
	f.srv.cfg.MaxConnections = 2
	addr := f.serve()
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The third connection is accepted by the kernel but not served.
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	_, _ = c3.Write([]byte("GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + f.tokens["operator"] + "\r\n\r\n"))
	_ = c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c3.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatal("third connection served over the cap")
	}
	if n := f.srv.Connections(); n != 2 {
		t.Fatalf("Connections() = %d", n)
	}
	conns[0].Close()
	_ = c3.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c3).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("after a slot freed: %q %v", line, err)
	}
	conns[1].Close()
}

func TestTLSReload(t *testing.T) {
	f := newFixture(t)
	cert, key := f.overTLS(t, "first")
	addr := f.serve()
	subject := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if s := subject(); s != "first" {
		t.Fatalf("certificate %q", s)
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 accepted")
	}
	writeCert(t, cert, key, "second")
	if s := subject(); s != "first" {
		t.Fatalf("certificate changed before Reload: %q", s)
	}
	if err := f.srv.ReloadCert(); err != nil {
		t.Fatal(err)
	}
	if s := subject(); s != "second" {
		t.Fatalf("after Reload: %q", s)
	}
	// A broken certificate keeps the one in use.
	if err := os.WriteFile(cert, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.ReloadCert(); err == nil {
		t.Fatal("Reload of a broken certificate succeeded")
	}
	if s := subject(); s != "second" {
		t.Fatalf("after a failed Reload: %q", s)
	}
}

// overTLS makes the fixture's server one of its configuration over TLS,
// with a new self-signed certificate for cn (and 127.0.0.1); it returns
// the certificate and key files.
func (f *fixture) overTLS(t *testing.T, cn string) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	writeCert(t, cert, key, cn)
	cfg := f.cfg.API
	cfg.TLSCert, cfg.TLSKey = cert, key
	f.srv = New(cfg, f.svc, f.srv.tokens, nil)
	return cert, key
}

func writeCert(t *testing.T, certFile, keyFile, cn string) {
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
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLimitListenerOpen: Open counts the connections accepted and not yet
// closed, not the slot an Accept waiting for one holds (a docs trial read
// ispmux_api_connections 1 with no connection open).
func TestLimitListenerOpen(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimitListener(inner, 4)
	defer l.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	waitOpen := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); l.Open() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Open() = %d, want %d", l.Open(), want)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // the Accept is waiting
	if n := l.Open(); n != 0 {
		t.Fatalf("Open() = %d with an Accept waiting and no connection, want 0", n)
	}
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-accepted
	waitOpen(1)
	c.Close()
	waitOpen(0)
}
