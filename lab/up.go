package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bringing a lab up: Up takes the plan (lab.go) and ownership (owner.go),
// clears leftovers of the same ID (down.go) and builds the namespaces, the
// veth pairs, the access bridge and the ISP routers and hosts; the DHCP
// lab's servers are started by startDHCP (dhcp.go).

// veth creates a veth pair with both ends in place, sets MTU 1500 and brings
// both ends up.
func veth(ctx context.Context, ns1, if1, mac1, ns2, if2, mac2 string) error {
	if _, err := run(ctx, "ip", "link", "add", "name", if1, "address", mac1, "mtu", "1500", "netns", ns1,
		"type", "veth", "peer", "name", if2, "address", mac2, "mtu", "1500", "netns", ns2); err != nil {
		return err
	}
	// veth "offloads" TX checksums: a frame leaves with only the
	// pseudo-header sum (CHECKSUM_PARTIAL) and the receiver's stack is
	// trusted to finish it. A frame that crosses AF_XDP loses that mark,
	// as it would have been finished by real NIC hardware, so the lab's
	// hosts compute their checksums in software, like hosts behind a NIC.
	// VLAN tags likewise: with tx VLAN "offload" a tag travels beside the
	// frame, not in it, and XDP on the peer never sees it (a real wire
	// carries it in the frame).
	for _, e := range [][2]string{{ns1, if1}, {ns2, if2}} {
		if _, err := run(ctx, "ip", "netns", "exec", e[0], "ethtool", "-K", e[1], "tx", "off",
			"txvlan", "off", "tx-vlan-stag-hw-insert", "off", "rxvlan", "off", "rx-vlan-stag-hw-parse", "off"); err != nil {
			return err
		}
	}
	if err := ipn(ctx, ns1, "link", "set", "dev", if1, "up"); err != nil {
		return err
	}
	return ipn(ctx, ns2, "link", "set", "dev", if2, "up")
}

// fastPathPeer turns GRO on on dev in ns, the lab's end of one of the
// appliance's ports, when the topology runs ispmux's fast path
// (Options.FastPath).
func (t *Topology) fastPathPeer(ctx context.Context, ns, dev string) error {
	if !t.FastPath {
		return nil
	}
	return SetGRO(ctx, ns, dev, true)
}

// Up removes leftovers of the same ID (see Down) and builds the lab. On any
// failure it tears down what it built and returns an error naming the failed
// command and its stderr.
func Up(ctx context.Context, o Options) (*Topology, error) {
	t, err := plan(o)
	if err != nil {
		return nil, err
	}
	// Owned by this process while it lives (see Sweep); `lab up` from the
	// command line exits at once, leaving the lab to whoever comes next.
	if err := own(t.ID); err != nil {
		return nil, err
	}
	if err := down(ctx, t.ID); err != nil {
		disown(t.ID)
		return nil, err
	}
	if err := t.build(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := Down(cctx, t.ID); derr != nil {
			err = fmt.Errorf("%w (teardown: %v)", err, derr)
		}
		return nil, err
	}
	return t, nil
}

func (t *Topology) build(ctx context.Context) error {
	for _, ns := range t.namespaces() {
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := sysctl(ctx, ns,
			"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"); err != nil {
			return err
		}
		if err := ipn(ctx, ns, "link", "set", "dev", "lo", "up"); err != nil {
			return err
		}
	}
	app, acc := t.Appliance.NS, t.AccessNS
	if err := sysctl(ctx, app, "net.ipv4.ip_forward=0"); err != nil {
		return err
	}
	if err := sysctl(ctx, acc, "net.ipv4.ip_forward=0"); err != nil {
		return err
	}

	// Access network: a bridge with isolated subscriber ports. Where
	// br_netfilter is loaded (its sysctls are per namespace, on by
	// default), the bridge would hand IPv4 to netfilter, whose header
	// check (br_validate_ipv4) drops a bad header length, total length or
	// checksum before the appliance sees it: a hostile-subscriber trial's
	// malformed frames tested the bridge, not ispmux. An access switch
	// does no such thing; off here.
	if err := bridgeNFOff(ctx, acc); err != nil {
		return err
	}
	if err := ipn(ctx, acc, "link", "add", "name", "br0", "address", mac(0xa0, 0xf0), "mtu", "1500",
		"type", "bridge", "stp_state", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := ipn(ctx, acc, "link", "set", "dev", "br0", "up"); err != nil {
		return err
	}
	a0 := t.Appliance.Access[0]
	if err := veth(ctx, app, a0.Name, a0.MAC, acc, a0.Peer, mac(0xa0, 0x10)); err != nil {
		return err
	}
	if err := ipn(ctx, acc, "link", "set", "dev", a0.Peer, "master", "br0"); err != nil {
		return err
	}
	if err := t.fastPathPeer(ctx, acc, a0.Peer); err != nil {
		return err
	}
	for i, s := range t.Subscribers {
		port := "p" + strconv.Itoa(i+1)
		if err := veth(ctx, s.NS, s.If, s.MAC, acc, port, mac(0xc1, byte(i+1))); err != nil {
			return err
		}
		if err := ipn(ctx, acc, "link", "set", "dev", port, "master", "br0"); err != nil {
			return err
		}
		if _, err := run(ctx, "ip", "netns", "exec", acc, "bridge", "link", "set", "dev", port, "isolated", "on"); err != nil {
			return err
		}
		if s.IP == "" {
			continue // DHCP lab: the subscriber's DHCP client configures it
		}
		if err := ipn(ctx, s.NS, "addr", "add", s.IP+"/24", "dev", s.If); err != nil {
			return err
		}
		if err := ipn(ctx, s.NS, "route", "add", "default", "via", s.Gateway, "dev", s.If); err != nil {
			return err
		}
	}

	// ISPs: router and host.
	for i, isp := range t.ISPs {
		up := t.Appliance.Uplinks[i]
		if err := veth(ctx, app, up.Name, up.MAC, isp.NS, isp.RouterIf, isp.RouterMAC); err != nil {
			return err
		}
		if err := t.fastPathPeer(ctx, isp.NS, isp.RouterIf); err != nil {
			return err
		}
		if err := veth(ctx, isp.NS, "h0", mac(0xb2, byte(i+1)), isp.HostNS, "eth0", mac(0xb3, byte(i+1))); err != nil {
			return err
		}
		if err := sysctl(ctx, isp.NS, "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
		steps := [][]string{
			{isp.NS, "addr", "add", isp.RouterAddr + "/24", "dev", isp.RouterIf},
			{isp.NS, "addr", "add", hostNet, "dev", "h0"},
			{isp.NS, "route", "add", isp.SubscriberNet, "via", strings.TrimSuffix(isp.OurAddr, "/24"), "dev", isp.RouterIf},
			{isp.HostNS, "addr", "add", isp.HostAddr + "/24", "dev", "eth0"},
			{isp.HostNS, "route", "add", "default", "via", strings.TrimSuffix(hostNet, "/24"), "dev", "eth0"},
		}
		if t.Generator != nil {
			steps = append(steps, []string{isp.NS, "route", "add", TrafficNet, "via", strings.TrimSuffix(isp.OurAddr, "/24"), "dev", isp.RouterIf})
		}
		for _, s := range steps {
			if err := ipn(ctx, s[0], s[1:]...); err != nil {
				return err
			}
		}
	}

	if g := t.Generator; g != nil {
		if err := veth(ctx, app, g.Access, g.AccessMAC, g.NS, g.If, g.MAC); err != nil {
			return err
		}
		if err := t.fastPathPeer(ctx, g.NS, g.If); err != nil {
			return err
		}
	}
	if t.DHCP {
		return t.startDHCP(ctx)
	}
	return nil
}
