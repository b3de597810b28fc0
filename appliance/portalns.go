package appliance

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/netnsrun"
)

// The portal runs in a network namespace of its own, created by ispmux at
// start and held only by ispmux (an open handle and the listening sockets,
// no name under /run/netns): nothing is left behind however ispmux exits,
// since the kernel destroys the namespace, and with it both ends of the
// link, when the last reference goes. The namespace holds one interface
// (portalPeer) with the link's second address and the portal's address,
// routes every onboarding pool via ispmux's end of the link, and has the
// portal's two listeners and nothing else: a subscriber in the walled
// garden can reach no other listener of the appliance host, whatever it
// listens on. ispmux's end of the link (cfg.Interface) is an AF_XDP port
// like the uplinks: the walled garden's VRF (binding.GardenVRF) has it as
// its uplink, with the namespace's address as next hop.
const portalPeer = "portal0"

// portalNS is the portal's namespace, its link and its listeners.
type portalNS struct {
	ns       netns.NsHandle
	hostIf   string
	gateway  netip.Addr // the namespace's end of the link: the garden's next hop
	local    netip.Addr // ispmux's end of the link
	http     net.Listener
	https    net.Listener
	hostLink netlink.Link
	// lock is the host link's name lock (datapath.LockLinkName), held
	// while the link is ours: a second ispmux configured with the same
	// portal interface is refused before it deletes this one's link.
	lock *os.File
}

// openPortalNS creates the portal's namespace and link and listens on the
// portal's address inside it: ports 80 and 443 (the walled garden) and the
// portal ports of VRFs 0..isps-1 (bound subscribers, see
// binding.PortalPort). pools are the onboarding pools the namespace
// routes back through ispmux; everything else (bound subscribers'
// addresses) goes back through it by the default route.
//
// The work runs on a goroutine of its own, whose thread is switched into
// the new namespace and back (netnsrun): a thread that cannot be switched
// back to the appliance's namespace stays locked and ends with that
// goroutine.
func openPortalNS(cfg configs.Portal, pools []netip.Prefix, isps int) (*portalNS, error) {
	lock, err := datapath.LockLinkName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("portal: link %s: %w", cfg.Interface, err)
	}
	type result struct {
		p   *portalNS
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := newPortalNS(cfg, pools, isps)
		done <- result{p, err}
	}()
	r := <-done
	if r.err != nil {
		lock.Close()
		return nil, r.err
	}
	r.p.lock = lock
	return r.p, nil
}

// newPortalNS is openPortalNS on its own goroutine.
func newPortalNS(cfg configs.Portal, pools []netip.Prefix, isps int) (_ *portalNS, err error) {
	p := &portalNS{hostIf: cfg.Interface, local: cfg.LinkPrefix.Addr().Next()}
	p.gateway = p.local.Next()
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.ns, err = netnsrun.New(); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	// A link of the same name is an earlier ispmux's (its namespace may
	// still be on its way out; a running one holds the name's lock, which
	// openPortalNS took): replace it.
	for attempt := 0; ; attempt++ {
		if old, err := netlink.LinkByName(cfg.Interface); err == nil {
			_ = netlink.LinkDel(old)
		}
		la := netlink.NewLinkAttrs()
		la.Name = cfg.Interface
		err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: portalPeer, PeerNamespace: netlink.NsFd(p.ns)})
		if err == nil {
			break
		}
		if attempt == 20 {
			return nil, fmt.Errorf("portal: create link %s: %w", cfg.Interface, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.hostLink, err = netlink.LinkByName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("portal: link %s: %w", cfg.Interface, err)
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+cfg.Interface+"/disable_ipv6", []byte("1"), 0)
	if err := netlink.LinkSetUp(p.hostLink); err != nil {
		return nil, fmt.Errorf("portal: set %s up: %w", cfg.Interface, err)
	}

	// Inside: addresses, routes, listeners.
	err = netnsrun.In(p.ns, func() error {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0)
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		return portalInside(p, cfg, pools, isps)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// portalInside configures the namespace and opens the listeners; the
// calling thread is in the namespace.
func portalInside(p *portalNS, cfg configs.Portal, pools []netip.Prefix, isps int) error {
	if err := portalLinkInside(p, cfg, pools); err != nil {
		return err
	}
	httpPorts, httpsPorts := []uint16{80}, []uint16{443}
	for v := range isps {
		httpPorts = append(httpPorts, binding.PortalPort(uint8(v), false))
		httpsPorts = append(httpsPorts, binding.PortalPort(uint8(v), true))
	}
	var err2 error
	if p.http, err2 = listenAll(cfg.Addr, httpPorts); err2 != nil {
		return err2
	}
	if p.https, err2 = listenAll(cfg.Addr, httpsPorts); err2 != nil {
		return err2
	}
	return nil
}

// portalLinkInside configures the namespace's end of the link (addresses,
// offloads, routes) and brings it up; the calling thread is in the
// namespace. (Also used to re-create the link: links.go.)
func portalLinkInside(p *portalNS, cfg configs.Portal, pools []netip.Prefix) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("portal: loopback in its namespace: %w", err)
	}
	peer, err := netlink.LinkByName(portalPeer)
	if err != nil {
		return fmt.Errorf("portal: link %s in its namespace: %w", portalPeer, err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(p.gateway, cfg.LinkPrefix.Bits()), netip.PrefixFrom(cfg.Addr, 32)} {
		if err := netlink.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}}); err != nil {
			return fmt.Errorf("portal: address %s: %w", a, err)
		}
	}
	if err := txChecksumOff(portalPeer); err != nil {
		return fmt.Errorf("portal: %s: %w", portalPeer, err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		return fmt.Errorf("portal: set %s up: %w", portalPeer, err)
	}
	for _, pool := range pools {
		r := &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: &net.IPNet{IP: pool.Addr().AsSlice(), Mask: net.CIDRMask(pool.Bits(), 32)},
			Gw: p.local.AsSlice(), Src: cfg.Addr.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("portal: route %s via %s: %w", pool, p.local, err)
		}
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: p.local.AsSlice(), Src: cfg.Addr.AsSlice()}); err != nil {
		return fmt.Errorf("portal: default route via %s: %w", p.local, err)
	}
	return nil
}

// listenAll listens on addr at every port and merges them into one
// listener.
func listenAll(addr netip.Addr, ports []uint16) (net.Listener, error) {
	m := &multiListener{conns: make(chan net.Conn), done: make(chan struct{})}
	for _, port := range ports {
		l, err := net.Listen("tcp4", netip.AddrPortFrom(addr, port).String())
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("portal: listen: %w", err)
		}
		m.ls = append(m.ls, l)
	}
	for _, l := range m.ls {
		go m.accept(l)
	}
	return m, nil
}

// multiListener is several listeners as one: Accept returns the next
// connection of any of them; Close closes them all.
type multiListener struct {
	ls    []net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (m *multiListener) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		select {
		case m.conns <- c:
		case <-m.done:
			c.Close()
			return
		}
	}
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, l := range m.ls {
			l.Close()
		}
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.ls[0].Addr() }

// txChecksumOff turns transmit checksum offload off on ifname (in the
// calling thread's namespace). A veth "offloads" it: a frame leaves with
// only the pseudo-header sum, for the receiving stack to finish; a frame
// that crosses AF_XDP loses that mark and would reach the subscriber with
// a wrong TCP checksum. Off, the kernel computes it (and segmentation
// offloads, which depend on it, go too: every frame fits the MTU).
func txChecksumOff(ifname string) error {
	const ethtoolSTxCsum = 0x17 // ETHTOOL_STXCSUM (linux/ethtool.h)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	v := struct{ cmd, data uint32 }{cmd: ethtoolSTxCsum}
	var req struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(req.name[:unix.IFNAMSIZ-1], ifname)
	req.data = unsafe.Pointer(&v)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("turn transmit checksum offload off: %w", e)
	}
	return nil
}

// close removes the link (both ends) and lets the namespace go.
func (p *portalNS) close() error {
	var errs []error
	for _, l := range []net.Listener{p.http, p.https} {
		if l != nil {
			if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	p.http, p.https = nil, nil
	if p.hostLink != nil {
		if err := netlink.LinkDel(p.hostLink); err != nil {
			errs = append(errs, fmt.Errorf("portal: remove link %s: %w", p.hostIf, err))
		}
		p.hostLink = nil
	}
	if p.ns.IsOpen() {
		_ = p.ns.Close()
	}
	if p.lock != nil {
		// Removed while held, as the ports' locks are: lock files do
		// not pile up in /run/ispmux.
		_ = os.Remove(p.lock.Name())
		p.lock.Close()
		p.lock = nil
	}
	return errors.Join(errs...)
}
