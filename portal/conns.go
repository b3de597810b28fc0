package portal

import (
	"net"
	"net/netip"
	"sync"

	"github.com/ispmux/ispmux/internal/binding"
)

// Connection limits: a garden device could otherwise hold any number of
// idle keep-alive connections (idleTimeout each) in the appliance's
// process, and many devices its file descriptors. A browser opens about
// six per host and scheme.
//
// A device (its address in its VRF: HTTP and HTTPS together) holds at
// most maxConnsPerSource; past maxConns-connsReserved in all, only devices
// holding fewer than fairConns get one more, up to maxConns. Before, the
// limit was per address and port, and 64 devices holding 32 idle
// connections on each of the two ports filled maxConns: every other
// device's portal was refused (a security trial). Now filling the
// reserve as well takes 96 devices at their limit and 256 more at
// fairConns, more than an onboarding pool of a /24 holds, while a device
// gets fairConns connections (enough for the portal's page) meanwhile.
const (
	maxConnsPerSource = 32
	maxConns          = 4096
	connsReserved     = 1024
	fairConns         = 4
)

// connLimits counts the open connections of the listeners it wraps
// (wrap), one count for all of them: a connection past the limits above
// is closed at once and counted (onRefuse).
type connLimits struct {
	mu       sync.Mutex
	n        map[device]int
	total    int
	onRefuse func()
}

// device is whom connLimits counts a connection for: the source address
// in its VRF (the portal's local port names the VRF of a bound
// subscriber, binding.PortalVRF; ports 80 and 443 are the walled
// garden's), both schemes together.
type device struct {
	addr netip.Addr
	vrf  uint8
}

// deviceOf is the device of a connection from src.
func deviceOf(src source) device {
	vrf, _, ok := binding.PortalVRF(src.port)
	if !ok {
		vrf = binding.GardenVRF
	}
	return device{src.addr, vrf}
}

// admitLocked reports whether one more connection of d is within the
// limits (ls.mu held).
func (ls *connLimits) admitLocked(d device) bool {
	n := ls.n[d]
	switch {
	case n >= maxConnsPerSource || ls.total >= maxConns:
		return false
	case ls.total >= maxConns-connsReserved && n >= fairConns:
		return false
	}
	return true
}

func newConnLimits(onRefuse func()) *connLimits {
	return &connLimits{n: map[device]int{}, onRefuse: onRefuse}
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
		d := deviceOf(src)
		ls := l.ls
		ls.mu.Lock()
		ok := ls.admitLocked(d)
		if ok {
			ls.n[d]++
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
		return &limitedConn{Conn: c, l: ls, d: d}, nil
	}
}

func (ls *connLimits) release(d device) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.total--
	if ls.n[d]--; ls.n[d] <= 0 {
		delete(ls.n, d)
	}
}

// limitedConn gives its place back once, at its first Close.
type limitedConn struct {
	net.Conn
	l    *connLimits
	d    device
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.d) })
	return err
}
