package api

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// LimitListener accepts at most n connections at once: Accept waits
// until an accepted connection is closed. Within n, each source address
// (an IPv6 one's /64) gets a share (admit): at most perSource(n)
// connections (n/8, but all n up to 8), and once n - n/4 are open in all, only a source holding fewer
// than fairConns gets another. A connection past its source's share is
// refused (Refused counts them): answered by Refuse, when set, else
// closed at once. Before, one client (an ISP's token, or none: a request
// answered 401 keeps its connection alive as long) holding all n kept
// every other ISP and the operator waiting in the kernel's backlog for as
// long as it liked.
type LimitListener struct {
	net.Listener
	n         int
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// open counts the accepted connections not yet closed: sem also
	// holds the slot of an Accept waiting for one (a trial read
	// ispmux_api_connections 1 with no connection open).
	open    atomic.Int64
	refused atomic.Uint64

	// Refuse, when set (before the first Accept), answers a refused
	// connection, in a goroutine of its own, and must return by a
	// deadline it sets on the connection (the listener closes the
	// connection then). At most maxRefusing run at once: a refused
	// connection past them is closed at once, so a flood of refused
	// connections costs at most maxRefusing goroutines, each for its
	// deadline.
	Refuse   func(net.Conn)
	refusing atomic.Int32

	mu  sync.Mutex
	src map[netip.Addr]int // open connections by source address
}

// fairConns is what a source may still open once the connections in all
// reach n - n/4 (the reserve): enough for a client's request or two.
const fairConns = 2

// maxRefusing is the most refused connections Refuse answers at once.
const maxRefusing = 64

// perSource is a source's share of n connections: n/8, but at least
// min(n, 8) (a small cap is one client's).
func perSource(n int) int { return max(n/8, min(n, 8)) }

// NewLimitListener wraps l.
func NewLimitListener(l net.Listener, n int) *LimitListener {
	return &LimitListener{Listener: l, n: n, sem: make(chan struct{}, n), done: make(chan struct{}), src: map[netip.Addr]int{}}
}

// Accept waits for a free slot, then for a connection within its
// source's share.
func (l *LimitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		a := sourceAddr(c.RemoteAddr())
		if !l.admit(a) {
			l.refused.Add(1)
			l.refuse(c)
			continue
		}
		return &limitConn{Conn: c, release: func() { l.release(a); <-l.sem }}, nil
	}
}

// refuse answers c with Refuse in a goroutine of its own, or closes it
// at once (no Refuse, or maxRefusing already answering).
func (l *LimitListener) refuse(c net.Conn) {
	if l.Refuse == nil {
		c.Close()
		return
	}
	// Taken only below the bound, so that Refusing never reads past it:
	// an Add(1) undone when over the bound showed maxRefusing+1 for a
	// moment (a CI run's TestRefusedFloodBounded read 65).
	for {
		n := l.refusing.Load()
		if n >= maxRefusing {
			c.Close()
			return
		}
		if l.refusing.CompareAndSwap(n, n+1) {
			break
		}
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		l.Refuse(c)
	}()
}

// Refusing is the number of refused connections Refuse is answering.
func (l *LimitListener) Refusing() int { return int(l.refusing.Load()) }

// sourceAddr is the source a connection comes from: its IPv4 address,
// or its IPv6 address's /64 (v6SourceBits; the zero Addr for one that has
// none: a unix socket's, all one source). An IPv6 host has a /64 of its
// own to draw addresses from: keyed by the whole address, one client took
// a share per address it used, and filled max_connections alone.
func sourceAddr(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, v6SourceBits).Masked().Addr()
	}
	return ip
}

// v6SourceBits is the prefix of an IPv6 address that is one source
// (sourceAddr): a site's subnet, every address of which its hosts may use.
const v6SourceBits = 64

// admit counts one more connection of source a if its share allows it.
func (l *LimitListener) admit(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.src[a]
	switch {
	case k >= perSource(l.n):
		return false
	case int(l.open.Load()) >= l.n-l.n/4 && k >= fairConns:
		return false
	}
	l.src[a] = k + 1
	l.open.Add(1)
	return true
}

// release gives back a connection of source a.
func (l *LimitListener) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.src[a]--; l.src[a] <= 0 {
		delete(l.src, a)
	}
	l.open.Add(-1)
}

// Close closes the listener; a waiting Accept returns.
func (l *LimitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open is the number of accepted connections not yet closed.
func (l *LimitListener) Open() int { return int(l.open.Load()) }

// Refused is the number of connections refused, past their source's
// share (answered by Refuse, or closed at once).
func (l *LimitListener) Refused() uint64 { return l.refused.Load() }

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
