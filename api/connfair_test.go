package api

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// One client (an ISP's token, or no token at all) that holds the API's
// connections open, each kept alive by a request every IdleTimeout,
// must not keep every other ISP and the operator out: a source address
// holds at most a share of [api] max_connections, so a request from
// another address is still served at once. Before, one address filled
// all of them and the others waited in the kernel's backlog for as long
// as it cared to hold them.
func TestConnectionsShareBySource(t *testing.T) {
	f := newFixture(t)
	f.srv.cfg.MaxConnections = 16
	addr := f.serve()
	// The hog: as many connections as the cap, from 127.0.0.1, each
	// kept alive after an answered request.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 16 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_, _ = c.Write([]byte("GET /v1/isps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + f.tokens["alpha"] + "\r\n\r\n"))
	}
	served := 0
	for _, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && strings.Contains(line, "200") {
			served++
		}
	}
	t.Logf("the hog's connections served: %d of 16", served)
	// The ones past its share are counted (ispmux_api_connections_refused_total)
	// and answered 503 (TestRefusedConnectionAnswered503).
	if got := f.srv.ConnectionsRefused(); got != uint64(16-served) || served != perSource(16) {
		t.Errorf("%d of the hog's 16 served, %d counted refused; want %d and %d", served, got, perSource(16), 16-perSource(16))
	}
	// Another client, from another address, is served.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET /v1/isps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + f.tokens["beta-1"] + "\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "HTTP/1.1 ") {
		t.Fatalf("a client from another address, with one address holding %d connections: %q %v (not served)", len(held), line, err)
	}
}

// admit's shares: a source holds at most perSource connections; past
// n-reserve in all, only sources holding fewer than fairConns get one.
func TestLimitListenerAdmit(t *testing.T) {
	l := NewLimitListener(nil, 256)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	n := 0
	for l.admit(a) {
		n++
	}
	if n != 32 {
		t.Errorf("one source got %d of 256, want 32", n)
	}
	if !l.admit(b) {
		t.Error("another source refused")
	}
	// Fill to n - reserve with other sources at their share.
	for i := 3; l.open.Load() < 192; i++ {
		s := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		for l.open.Load() < 192 && l.admit(s) {
		}
	}
	c := netip.MustParseAddr("198.51.100.1")
	got := 0
	for range 5 {
		if l.admit(c) {
			got++
		}
	}
	if got != fairConns {
		t.Errorf("past the reserve, a new source got %d connections, want fairConns (%d)", got, fairConns)
	}
	l.release(c)
	if !l.admit(c) {
		t.Error("a connection released is not given back")
	}
	// Small caps: one source may have them all.
	s := NewLimitListener(nil, 2)
	for i := range 2 {
		if !s.admit(a) {
			t.Errorf("max_connections 2: one source refused its connection %d", i+1)
		}
	}
}

// An IPv6 client has a /64 of its own to draw source addresses from: keyed
// by the whole address, it took a share per address it used, and one
// client filled max_connections (every connection past the reserve from a
// new address of its /64). A /64 is one source; other /64s are others.
// Fails with sources keyed by the whole IPv6 address.
func TestLimitListenerIPv6SourceIsItsPrefix(t *testing.T) {
	l := NewLimitListener(nil, 256)
	n := 0
	for i := range 256 {
		a := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("2001:db8:1:2::%x", i+1)), Port: 40000 + i}
		if l.admit(sourceAddr(a)) {
			n++
		}
	}
	if n != perSource(256) {
		t.Errorf("one /64, a new address a connection: %d of 256 admitted, want its share %d", n, perSource(256))
	}
	if !l.admit(sourceAddr(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 1})) {
		t.Error("a source of another /64 refused")
	}
	// IPv4, and IPv4-mapped IPv6, are keyed by the whole address.
	v4 := sourceAddr(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1})
	if v4 != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("an IPv4-mapped source is %v, want 192.0.2.7", v4)
	}
}

// refusedFixture serves the API with max_connections 16 (a source's
// share: 8) over TLS or not, and holds the share of 127.0.0.1 with idle
// connections; it returns the address and a dial of another connection
// from 127.0.0.1 (over TLS with tlsOn), which is past the share.
func refusedFixture(t *testing.T, tlsOn bool, timeout time.Duration) (*fixture, func() (net.Conn, error)) {
	f := newFixture(t)
	if tlsOn {
		f.overTLS(t, "api")
	}
	f.srv.cfg.MaxConnections = 16
	f.srv.Limits.RefuseTimeout = timeout
	addr := f.serve()
	for range perSource(16) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	// The held ones are accepted (in order) before the next.
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Connections() < perSource(16) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return f, func() (net.Conn, error) {
		if tlsOn {
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		}
		return net.Dial("tcp", addr)
	}
}

// A connection past its source's share is answered, not reset: 503 with
// Retry-After, Connection: close and a problem whose detail says why (one
// line), then closed cleanly (EOF, not a reset), over plain HTTP and over
// TLS (after the handshake). Before, it was closed at once without a
// word, and only the operator's ispmux_api_connections_refused_total
// said why the client saw a reset.
func TestRefusedConnectionAnswered503(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			f, dial := refusedFixture(t, tlsOn, 2*time.Second)
			c, err := dial()
			if err != nil {
				t.Fatalf("dial past the share: %v", err)
			}
			defer c.Close()
			_, _ = c.Write([]byte("GET /v1/isps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + f.tokens["alpha"] + "\r\n\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("a connection past its source's share: %v, want a 503", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the 503's body: %v", err)
			}
			var p Problem
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close ||
				resp.Header.Get("Content-Type") != "application/problem+json" || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 ||
				json.Unmarshal(body, &p) != nil || p.Type != ProblemTypePrefix+"unavailable" || !strings.Contains(p.Detail, "too many connections from your address") {
				t.Errorf("answer past the share: %d %v\n%s", resp.StatusCode, resp.Header, body)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the 503: %v, want EOF (closed, not reset)", err)
			}
			if got := f.srv.ConnectionsRefused(); got != 1 {
				t.Errorf("refused counted %d, want 1", got)
			}
		})
	}
}

// A flood of refused connections costs little: at most maxRefusing are
// answered at once (the others closed at once), each for RefuseTimeout
// at most, even when its client neither reads nor closes; then no
// goroutine is left of them.
func TestRefusedFloodBounded(t *testing.T) {
	f, dial := refusedFixture(t, false, 300*time.Millisecond)
	base := runtime.NumGoroutine()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	const n = 3 * maxRefusing
	peak := 0
	for range n {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		peak = max(peak, f.srv.ln.Refusing())
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.ConnectionsRefused() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		peak = max(peak, f.srv.ln.Refusing())
	}
	if got := f.srv.ConnectionsRefused(); got != n {
		t.Fatalf("%d refused, want %d", got, n)
	}
	if peak > maxRefusing || peak == 0 {
		t.Errorf("%d refused connections answered at once, want 1..%d", peak, maxRefusing)
	}
	// Past RefuseTimeout every answer is over, its connection closed
	// (the clients still hold theirs open): 300 ms after the last was
	// refused, and slack for a loaded machine.
	deadline = time.Now().Add(1500 * time.Millisecond)
	for (f.srv.ln.Refusing() != 0 || runtime.NumGoroutine() > base+5) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := f.srv.ln.Refusing(); r != 0 {
		t.Errorf("%d refused connections still answered past RefuseTimeout", r)
	}
	if g := runtime.NumGoroutine(); g > base+5 {
		t.Errorf("%d goroutines after the flood, %d before", g, base)
	}
}
