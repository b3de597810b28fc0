package dhcpproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/circuitid"
	"github.com/ispmux/ispmux/subscribers"
)

// fromClient checks and admits a subscriber's message, then relays it.
func (p *Proxy) fromClient(c *Circuit, pkt *classifier.Packet, payload []byte) {
	if !c.Addr.IsValid() {
		// No server identifier to answer with (configs requires an
		// address where DHCP subscribers attach; static ones may not).
		p.count("no_access_address")
		return
	}
	m, err := dhcpv4.FromBytes(payload)
	if err != nil {
		p.count(errMalformed.Error())
		return
	}
	src := net.HardwareAddr(macBytes(pkt.Src))
	if err := checkClient(m, src); err != nil {
		p.count(err.Error())
		switch err {
		case errChaddr, errClientOption82, errClientGiaddr:
			// What a subscriber forging identities or posing as a
			// relay sends: worth an event, not only a counter.
			p.event(subscribers.EventRejected, pkt.Src, "", netip.Addr{}, "DHCP message refused: "+err.Error())
		}
		return
	}
	now := time.Now()
	sk := subKey{circuitKey{c.Port, c.VLAN}, pkt.Src}
	// Admission before the rate limits: an unregistered or blocked MAC
	// never spends the circuit's shared budget (a flood of random MACs
	// would lock every subscriber of the circuit out) and gets no
	// per-MAC state (it would grow with every MAC a flood makes up).
	reg, err := p.store.Registration(subscribers.MAC(src))
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		p.count("unknown_subscriber")
		p.event(subscribers.EventUnknown, pkt.Src, "", netip.Addr{}, "not registered ("+m.MessageType().String()+")")
		return
	case err != nil:
		p.count("store_error")
		p.log.Warn("dhcp: registry", "err", err)
		return
	case reg.Blocked:
		p.count("blocked_subscriber")
		p.event(subscribers.EventBlocked, pkt.Src, reg.ISP, netip.Addr{}, "blocked")
		return
	case reg.Access != "" && reg.Access != c.Name:
		p.count("wrong_circuit")
		p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "registered on access "+reg.Access+", seen on "+c.Name)
		return
	}
	if mt := m.MessageType(); p.isStatic(pkt.Src) && mt != dhcpv4.MessageTypeInform {
		p.count("static_subscriber")
		if mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest {
			p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "static subscriber: its address is configured, DHCP "+mt.String()+" not served")
		}
		return
	}
	if limit := p.limits.allow(sk, now); limit != "" {
		// rate_limited counts both; rate_limited_mac and
		// rate_limited_circuit say which limit it was.
		p.count("rate_limited")
		p.count("rate_limited_" + limit)
		why := fmt.Sprintf("this subscriber's DHCP rate limit (%d/s, burst %d) exceeded", p.cfg.MACRate, p.cfg.MACBurst)
		if limit == "circuit" {
			why = fmt.Sprintf("access %s's DHCP rate limit (%d/s, burst %d, all its subscribers) exceeded", c.Name, p.cfg.CircuitRate, p.cfg.CircuitBurst)
		}
		p.event(subscribers.EventRateLimited, pkt.Src, reg.ISP, netip.Addr{}, why)
		return
	}
	isp := p.isps[reg.ISP]
	if isp == nil || len(isp.Servers) == 0 {
		p.count("no_isp_server")
		p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "ISP has no DHCP server configured")
		return
	}
	unicast := pkt.Dst == c.MAC && pkt.DstIP == ip4(c.Addr)
	p.relay(c, isp, reg, sk, payload, m, unicast, now)
}

// relay sends m to every DHCP server of isp as an extended request.
func (p *Proxy) relay(c *Circuit, isp *ISP, reg subscribers.Registration, sk subKey, raw []byte, m *dhcpv4.DHCPv4, unicast bool, now time.Time) {
	mt := m.MessageType()
	ri := relayInfo{
		CircuitID:    []byte(circuitID(isp.CircuitID, c, sk.mac)),
		RemoteID:     macBytes(sk.mac),
		SubscriberID: []byte(reg.CustomerID),
		Unicast:      unicast,
		VSS:          isp.VSS,
	}
	if isp.ServerIDOverride {
		ri.ServerIDOverride = c.Addr
	}
	ri.LinkSelection = isp.LinkSelection
	op82 := ri.encode()
	if len(op82) > 255 {
		// configs bounds every part; a registration from elsewhere may
		// not be. Never split or cut our Option 82.
		p.count("option82_too_long")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{},
			fmt.Sprintf("Option 82 would be %d bytes (max 255): customer ID or circuit ID too long", len(op82)))
		return
	}

	held, hasLease := p.leases.get(sk)
	if mt == dhcpv4.MessageTypeRelease || mt == dhcpv4.MessageTypeDecline {
		// Only the holder's own address can be released or declined
		// (RFC 2131 §4.3.4): a message naming another one changes
		// nothing and goes nowhere.
		named := m.ClientIPAddr
		if mt == dhcpv4.MessageTypeDecline {
			named = m.RequestedIPAddress()
		}
		if a, _ := netip.AddrFromSlice(named.To4()); !hasLease || a != held.b.IP || held.isp != isp {
			// Not its own binding: relaying it would let a
			// subscriber release or quarantine (DECLINE) a
			// neighbour's lease at the ISP.
			p.count("release_not_own_address")
			return
		}
	}

	leaseSID := netip.Addr{}
	if hasLease && held.isp == isp {
		leaseSID = held.b.ServerID
	}
	pk := pendKey{m.TransactionID, sk.mac, isp.Index}
	t, ispServerID, err := p.tx.begin(pk, sk, c, isp, reg, op82, m, leaseSID, now, p.cfg.Timeout, p.cfg.MaxPending)
	if err != nil {
		p.count("pending_full")
		return
	}

	gw, ok := p.tables.NextHopMAC(isp.Index)
	if !ok {
		// The ISP cannot be reached now: say so, rather than let the
		// transaction time out and blame the ISP's servers.
		p.count("no_next_hop")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{}, "ISP unreachable: next hop not resolved (uplink down?)")
		p.tx.abandon(pk, t)
		return
	}
	payload := relayUp(raw, m, isp.Addr, c.Addr, ispServerID, &ri)
	if n, mtu := ipv4HeaderLen+udpHeaderLen+len(payload), p.uplinkMTU(isp); n > mtu {
		// The subscriber's message is legal; with our Option 82 it no
		// longer fits the uplink. Relaying it without Option 82 would
		// send the ISP a request it cannot validate, so it is refused
		// here, saying why (rather than a timeout blaming the ISP).
		p.count("relay_too_big")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{},
			fmt.Sprintf("%s of %d bytes does not fit the uplink MTU (%d) with Option 82", mt, n, mtu))
		p.tx.abandon(pk, t)
		return
	}
	sent := false
	for _, srv := range isp.Servers {
		f := fib.UDPFrame(gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, payload)
		if p.send.Inject(isp.Port, f) {
			sent = true
		}
	}
	if !sent {
		p.count("inject_full")
		return
	}
	p.count("relayed_" + strings.ToLower(mt.String()))
	p.log.Debug("dhcp relayed", "mac", binding.MACString(sk.mac), "type", mt.String(), "xid", m.TransactionID.String(),
		"isp", isp.Name, "servers", len(isp.Servers), "bytes", len(payload))

	switch mt {
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		kind := subscribers.EventReleased
		if mt == dhcpv4.MessageTypeDecline {
			kind = subscribers.EventDeclined
		}
		ip := p.unbind(sk)
		why := "the subscriber released its lease"
		if kind == subscribers.EventDeclined {
			why = "the subscriber declined its address (in use on its link)"
		}
		p.event(kind, sk.mac, isp.Name, ip, why)
	}
}

// circuitID expands the template (configs has checked its placeholders).
func circuitID(tmpl string, c *Circuit, mac uint64) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return circuitid.Expand(tmpl, c.Interface, int(c.VLAN), c.Name, binding.MACString(mac))
}
