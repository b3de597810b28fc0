package api

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
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
	// The ones past its share are counted (ispmux_api_connections_refused_total):
	// closed without an answer, they are otherwise seen by no one but
	// the client.
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
