package portal

import (
	"net"
	"testing"
	"time"
)

// TestConnLimit: a garden device could hold any number of idle keep-alive
// connections open in the appliance's process (the portal capped requests
// in flight per address, not connections). The 33rd connection from one
// source is closed at once and counted; one closed makes room again.
func TestConnLimit(t *testing.T) {
	r := newRig(t, nil)
	httpAddr, httpsAddr, _ := r.serve()
	for _, addr := range []string{httpAddr, httpsAddr} {
		var conns []net.Conn
		for range maxConnsPerSource {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		before := r.srv.Stats().ConnsRefused
		extra, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if !closedByPeer(extra) {
			t.Errorf("%s: connection %d from one address kept open", addr, maxConnsPerSource+1)
		}
		extra.Close()
		if got := r.srv.Stats().ConnsRefused - before; got != 1 {
			t.Errorf("%s: conns_refused +%d, want +1", addr, got)
		}
		conns[0].Close()
		var again net.Conn
		deadline := time.Now().Add(5 * time.Second)
		for {
			again, err = net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if !closedByPeer(again) {
				break
			}
			again.Close()
			if time.Now().After(deadline) {
				t.Fatalf("%s: no room after a connection closed", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		again.Close()
		for _, c := range conns[1:] {
			c.Close()
		}
	}
}

// closedByPeer reports whether the server closed c within a moment
// (a read sees EOF or a reset rather than a timeout).
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestConnLimitsShared: the HTTP and HTTPS listeners count into one total
// (maxConns is "in all", OPERATIONS.md); each listener had its own.
func TestConnLimitsShared(t *testing.T) {
	ls := newConnLimits(func() {})
	var conns []net.Conn
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		wl := ls.wrap(l)
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := wl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, a)
	}
	ls.mu.Lock()
	total := ls.total
	ls.mu.Unlock()
	if total != 2 {
		t.Errorf("one connection on each of two listeners: total %d, want 2", total)
	}
	for _, c := range conns {
		c.Close()
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.total != 0 || len(ls.n) != 0 {
		t.Errorf("after closing: total %d, sources %v", ls.total, ls.n)
	}
}
