package portal

import (
	"net"
	"net/netip"
	"sync"
)

// Connection limits: a garden device could otherwise hold any number of
// idle keep-alive connections (idleTimeout each) in the appliance's
// process, and many devices its file descriptors. A browser opens about
// six per host and scheme.
const (
	maxConnsPerSource = 32
	maxConns          = 4096
)

// connLimit wraps a listener: a connection past maxConnsPerSource from one
// source (address and local port, as inflight) or past maxConns in all is
// closed at once and counted (onRefuse).
type connLimit struct {
	net.Listener
	mu       sync.Mutex
	n        map[source]int
	total    int
	onRefuse func()
}

func newConnLimit(l net.Listener, onRefuse func()) *connLimit {
	return &connLimit{Listener: l, n: map[source]int{}, onRefuse: onRefuse}
}

// Accept returns the next connection within the limits.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := connSource(c)
		l.mu.Lock()
		ok := l.n[src] < maxConnsPerSource && l.total < maxConns
		if ok {
			l.n[src]++
			l.total++
		}
		l.mu.Unlock()
		if !ok {
			// Counted before the close: a client that sees the close
			// sees it counted.
			l.onRefuse()
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

func (l *connLimit) release(src source) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.n[src]--; l.n[src] <= 0 {
		delete(l.n, src)
	}
}

// connSource is a connection's source: its remote address and the local
// port it reached.
func connSource(c net.Conn) source {
	var src source
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		src.addr = ap.Addr().Unmap().WithZone("")
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		src.port = ap.Port()
	}
	return src
}

// limitedConn gives its place back once, at its first Close.
type limitedConn struct {
	net.Conn
	l    *connLimit
	src  source
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
