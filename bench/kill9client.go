package bench

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/netnsrun"
	"github.com/ispmux/ispmux/subscribers"
)

// bench kill9's DHCP side: one AF_PACKET socket in the generator's
// namespace (the access port the seeded subscribers are bound on) through
// which the trial's clients run DORA (generator MACs, registered in the
// configuration), renew (INIT-REBOOT REQUEST) and RELEASE, recording what
// each one was told in the trial's model (kill9model.go).

// k9Op is what a client is doing.
type k9Op uint8

const (
	k9Idle k9Op = iota
	k9Discover
	k9Request
	k9Renew
)

// k9Client is one MAC the trial drives over DHCP.
type k9Client struct {
	mac   subscribers.MAC
	op    k9Op
	xid   dhcpv4.TransactionID
	since time.Time
	ip    netip.Addr // the address offered (k9Request) or renewed (k9Renew)
	srv   net.IP
}

// k9Wire is the trial's DHCP socket and its clients in flight.
type k9Wire struct {
	fd, ifindex int
	m           *k9Model
	mu          sync.Mutex
	busy        map[dhcpv4.TransactionID]*k9Client
	server      net.IP // the server identifier of ispmux's replies
	timeout     time.Duration
	onAck       func() // called after each ACK recorded (the killer's cue)
}

// openK9Wire opens the socket on interface ifName of namespace ns.
func openK9Wire(ns, ifName string, m *k9Model) (*k9Wire, error) {
	w := &k9Wire{m: m, busy: map[dhcpv4.TransactionID]*k9Client{}, timeout: 3 * time.Second, fd: -1}
	err := netnsrun.InNamed(ns, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		w.ifindex = ifi.Index
		w.fd, err = openGenSocket(ifi.Index)
		return err
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *k9Wire) close() { unix.Close(w.fd) }

func (w *k9Wire) send(f []byte) { _ = sendFrame(w.fd, w.ifindex, f) }

func newXID() dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	v := rand.Uint32()
	x[0], x[1], x[2], x[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return x
}

// start begins op for mac (DORA or renewal of ip); false if mac is busy.
func (w *k9Wire) start(mac subscribers.MAC, op k9Op, ip netip.Addr) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.busy {
		if c.mac == mac {
			return false
		}
	}
	c := &k9Client{mac: mac, op: op, xid: newXID(), since: time.Now(), ip: ip}
	w.busy[c.xid] = c
	hw := net.HardwareAddr(mac[:])
	switch op {
	case k9Discover:
		w.m.note(mac, k9Pending, netip.Addr{}, "dora")
		w.send(discoverFrame(hw, c.xid))
	case k9Renew:
		// INIT-REBOOT: the address the client holds, no server identifier.
		w.m.note(mac, k9Pending, netip.Addr{}, "renew")
		msg, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithTransactionID(c.xid),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), paramRequest,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())))
		if err != nil {
			panic(err)
		}
		w.send(clientFrame(hw, msg.ToBytes()))
	}
	return true
}

// release sends mac's RELEASE of ip and records it.
func (w *k9Wire) release(mac subscribers.MAC, ip netip.Addr) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.busy {
		if c.mac == mac {
			return false
		}
	}
	srv := w.server
	if srv == nil {
		srv = net.ParseIP("100.64.0.1").To4()
	}
	hw := net.HardwareAddr(mac[:])
	msg, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithTransactionID(newXID()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ip.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srv)))
	if err != nil {
		panic(err)
	}
	w.m.note(mac, k9Released, ip, "release")
	w.send(clientFrame(hw, msg.ToBytes()))
	return true
}

// receive reads replies until stop is closed.
func (w *k9Wire) receive(stop <-chan struct{}) {
	buf := make([]byte, 4096)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				w.expire(time.Now())
				continue
			}
			return
		}
		m, err := parseReply(buf[:n])
		if err != nil {
			continue
		}
		w.handle(m)
		w.expire(time.Now())
	}
}

func (w *k9Wire) handle(m *dhcpv4.DHCPv4) {
	w.mu.Lock()
	c := w.busy[m.TransactionID]
	if c == nil || len(m.ClientHWAddr) < 6 || subscribers.MAC(m.ClientHWAddr[:6]) != c.mac {
		w.mu.Unlock()
		return
	}
	acked := false
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		if c.op == k9Discover {
			c.op, c.srv = k9Request, m.ServerIdentifier()
			c.ip, _ = netip.AddrFromSlice(m.YourIPAddr.To4())
			w.send(requestFrame(net.HardwareAddr(c.mac[:]), c.xid, m.YourIPAddr, c.srv))
		}
	case dhcpv4.MessageTypeAck:
		ip, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
		if s := m.ServerIdentifier(); s != nil {
			w.server = s.To4()
		}
		w.m.note(c.mac, k9Bound, ip, "ack")
		delete(w.busy, c.xid)
		acked = true
	case dhcpv4.MessageTypeNak:
		// ispmux says the client holds nothing: whatever the store has
		// is taken as it is at the next check.
		w.m.note(c.mac, k9Unsure, netip.Addr{}, "nak")
		w.m.count("nak")
		delete(w.busy, c.xid)
	}
	w.mu.Unlock()
	if acked && w.onAck != nil {
		w.onAck()
	}
}

// expire ends exchanges without an answer for the timeout: what they
// left is unknown (an ACK may have been lost after the commit).
func (w *k9Wire) expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x, c := range w.busy {
		if now.Sub(c.since) > w.timeout {
			w.m.note(c.mac, k9Unsure, netip.Addr{}, "timeout")
			w.m.count("timeout")
			delete(w.busy, x)
		}
	}
}

// abandon drops every exchange in flight (ispmux was killed): their
// outcome is unknown.
func (w *k9Wire) abandon() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x, c := range w.busy {
		w.m.note(c.mac, k9Unsure, netip.Addr{}, "in flight at the kill")
		delete(w.busy, x)
	}
}
