package portal

import (
	"net"
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

// connLimits counts the open connections of the listeners it wraps
// (wrap), one count for all of them: a connection past maxConnsPerSource
// from one source (address and local port, as inflight) or past maxConns
// in all is closed at once and counted (onRefuse).
type connLimits struct {
	mu       sync.Mutex
	n        map[source]int
	total    int
	onRefuse func()
}

func newConnLimits(onRefuse func()) *connLimits {
	return &connLimits{n: map[source]int{}, onRefuse: onRefuse}
}

// wrap returns l with its connections counted in ls.
func (ls *connLimits) wrap(l net.Listener) net.Listener { return &connLimit{Listener: l, ls: ls} }

// connLimit is a listener whose connections ls counts.
type connLimit struct {
	net.Listener
	ls *connLimits
}

// Accept returns the next connection within the limits.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, _ := sourceOf(c.RemoteAddr().String(), c.LocalAddr())
		ls := l.ls
		ls.mu.Lock()
		ok := ls.n[src] < maxConnsPerSource && ls.total < maxConns
		if ok {
			ls.n[src]++
			ls.total++
		}
		ls.mu.Unlock()
		if !ok {
			// Counted before the close: a client that sees the close
			// sees it counted.
			ls.onRefuse()
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: ls, src: src}, nil
	}
}

func (ls *connLimits) release(src source) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.total--
	if ls.n[src]--; ls.n[src] <= 0 {
		delete(ls.n, src)
	}
}

// limitedConn gives its place back once, at its first Close.
type limitedConn struct {
	net.Conn
	l    *connLimits
	src  source
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
