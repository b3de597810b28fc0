package engine

import (
	"encoding/binary"
	"math/bits"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// The forwarding lane: the frames nearly every packet is, a plain IPv4
// datagram from a bound subscriber to a unicast address beyond the
// gateway, or from an ISP to one of its bound subscribers, decided from the
// frame's bytes without decoding it into a classifier.Packet. Process tries
// the lane first (laneKey in its first pass, laneUp or laneDown in its
// last); a frame the lane does not decide goes the general way (Decode,
// fromSubscriber or fromISP) with the same table lookup, so the lane
// changes no verdict, only its cost: every condition below is one the
// general way checks too, and where it would do anything but route the
// frame the lane declines (FuzzLane compares the two ways).
//
// Measured (BenchmarkPipeline, 4 alternated runs of each build): 47.2 →
// 43.9 ns per packet at 1K, 53.7 → 50.2 at 1M; BenchmarkProcessHot (one
// batch over and over, everything in the cache) 22.0 → 17.7. A straight-line
// classifier.Decode for the same frames, filling the Packet, gained
// nothing measurable: what the lane saves is the Packet's 112 bytes
// written and read back, and the general way's calls and branches.

// roleLaneUp and roleLaneDown mark a frame laneKey took, from a
// subscriber and from an ISP: its MAC table or FIB key is in macKeys or
// fibKeys, its L3 offset in laneL3.
const (
	roleLaneUp   = 3
	roleLaneDown = 4
)

// laneMinFrame is the shortest frame laneKey looks at: an Ethernet header
// with one 802.1Q tag and a 20-byte IPv4 header.
const laneMinFrame = 14 + 4 + 20

// laneKey reports whether frame f, received on port pt (index in), may
// take the lane: IPv4 with a 20-byte header, untagged or with one 802.1Q
// tag, to our MAC from a unicast MAC, on an access VLAN or an ISP's uplink
// VLAN (not the walled garden's). It returns the frame's role
// (roleLaneUp, roleLaneDown; roleNone: not the lane's), its table key (MAC
// table, FIB) and its L3 offset.
func laneKey(pt *port, in uint8, f []byte) (role uint8, key uint64, l3 uint8) {
	if len(f) < laneMinFrame {
		return roleNone, 0, 0
	}
	_ = f[laneMinFrame-1]
	et := binary.BigEndian.Uint16(f[12:14])
	var vlan uint16
	l3 = 14
	if et == classifier.EtherTypeVLAN {
		vlan = binary.BigEndian.Uint16(f[14:16]) & classifier.MaxVLAN
		et = binary.BigEndian.Uint16(f[16:18])
		l3 = 18
	}
	src := classifier.MAC(f[6:12])
	if et != classifier.EtherTypeIPv4 || f[l3] != 0x45 || classifier.MAC(f[0:6]) != pt.mac ||
		src == 0 || classifier.IsMulticastMAC(src) {
		return roleNone, 0, 0
	}
	switch pt.role[vlan] {
	case roleAccess:
		return roleLaneUp, classifier.Key(in, vlan, src), l3
	case roleUplink:
		// The garden's uplink carries the portal's answers, which the
		// general way maps back to their VRF (fromPortalVRF).
		if isp := pt.isp[vlan]; isp != binding.GardenVRF {
			return roleLaneDown, fib.Key(isp, binary.BigEndian.Uint32(f[l3+16:l3+20])), l3
		}
	}
	return roleNone, 0, 0
}

// laneVLAN is the VLAN of frame f, which laneKey took with its L3 at l3:
// the tag's VID (18: one 802.1Q tag), or 0 untagged.
func laneVLAN(f []byte, l3 int) uint16 {
	if l3 == 18 {
		return binary.BigEndian.Uint16(f[14:16]) & classifier.MaxVLAN
	}
	return 0
}

// laneIPv4 reads the IPv4 header at l3 in f for laneUp and laneDown: it
// reports false unless the datagram is well formed as Decode checks it
// (within the frame, its checksum right, an 8-byte UDP or 20-byte TCP
// header within it; the lane asks 28 bytes of any datagram), is no
// fragment, has a TTL above 1 (the worker decrements it), and has
// neither port 67 nor 68 (DHCP is the proxy's, and other datagrams to or
// from those ports are dropped: classifier.TouchesDHCPPort).
func laneIPv4(f []byte, l3 int) (total int, proto uint8, src, dst uint32, ok bool) {
	if len(f) < l3+28 {
		return 0, 0, 0, 0, false
	}
	// The header's first 20 bytes as three little-endian words, its
	// fields taken from them: the ones' complement sum is the same in
	// either byte order, and three loads replace the field-by-field reads
	// and ChecksumOK's call (BenchmarkProcessHot 18.1 → 16.6 ns).
	ip := (*[28]byte)(f[l3 : l3+28])
	w0 := binary.LittleEndian.Uint64(ip[0:8])
	w1 := binary.LittleEndian.Uint64(ip[8:16])
	w2 := binary.LittleEndian.Uint32(ip[16:20])
	total = int(ip[2])<<8 | int(ip[3])
	ttl, proto := uint8(w1), uint8(w1>>8)
	src, dst = bits.ReverseBytes32(uint32(w1>>32)), bits.ReverseBytes32(w2)
	sum := w0&0xffffffff + w0>>32 + w1&0xffffffff + w1>>32 + uint64(w2)
	sum = sum&0xffffffff + sum>>32
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	// MF and the fragment offset: bytes 6 and 7 but byte 6's top two
	// bits (reserved, DF).
	if w0&0xff3f000000000000 != 0 || ttl <= 1 || total < 28 || total > len(f)-l3 || sum != 0xffff {
		return 0, 0, 0, 0, false
	}
	switch proto {
	case classifier.ProtoUDP:
		sport, dport := binary.BigEndian.Uint16(ip[20:22]), binary.BigEndian.Uint16(ip[22:24])
		if sport == 67 || sport == 68 || dport == 67 || dport == 68 {
			return 0, 0, 0, 0, false
		}
	case classifier.ProtoTCP:
		if total < 40 {
			return 0, 0, 0, 0, false
		}
	}
	return total, proto, src, dst, true
}

// laneUp decides frame i (f) from a subscriber, which laneKey took, with
// its MAC table lookup at hand: it sets a Forward verdict to the
// subscriber's ISP and reports true, or reports false, having written
// nothing, for the general way to decide.
func (p *Processor) laneUp(pt *port, i int, f []byte, out *datapath.Verdict) bool {
	if !p.found[i] {
		return false
	}
	sub := classifier.UnpackSub(p.vals[i])
	if sub.Flags&classifier.FlagBound == 0 || sub.ISP >= binding.GardenVRF {
		return false // the walled garden's (gardenPass), or no ISP's
	}
	l3 := int(p.laneL3[i])
	total, proto, src, dst, ok := laneIPv4(f, l3)
	vlan := laneVLAN(f, l3)
	// From the bound address, to a unicast address that is not the
	// gateway's, and not to the portal (toPortal).
	if !ok || src != sub.IP || !unicastAddr(dst) || dst == pt.addr[vlan] ||
		proto == classifier.ProtoTCP && p.garden != nil && dst == p.garden.portal {
		return false
	}
	up := &p.up.ISP[sub.ISP]
	if !up.Configured || !up.Resolved {
		return false
	}
	if mtu := int(p.s.mtu[up.Port%datapath.MaxPorts].Load()); mtu != 0 && total > mtu {
		return false
	}
	p.routeL2(out, up.Port, &up.L2, up.L2Len, l3, l3+total)
	return true
}

// laneDown decides frame i (f) from an ISP, which laneKey took, with its
// FIB lookup at hand: it sets a Forward verdict to the bound subscriber and
// reports true, or reports false, having written nothing, for the general
// way to decide.
func (p *Processor) laneDown(pt *port, i int, f []byte, out *datapath.Verdict) bool {
	if !p.ffound[i] {
		return false
	}
	l3 := int(p.laneL3[i])
	total, _, _, dst, ok := laneIPv4(f, l3)
	vlan := laneVLAN(f, l3)
	up := p.up.Get(pt.isp[vlan])
	if !ok || up == nil || !up.Configured || dst == up.Addr {
		return false // not routed, or to our uplink address
	}
	d := fib.UnpackDest(p.fvals[i])
	if mtu := int(p.s.mtu[d.Port%datapath.MaxPorts].Load()); mtu != 0 && total > mtu {
		return false
	}
	p.route(out, d.Port, d.MAC, p.s.ports[d.Port%datapath.MaxPorts].mac, d.VLAN, l3, l3+total)
	return true
}

// laneDecoded decodes frame i (f), which laneKey took and the lane left to
// the general way, and reports whether it decoded; if not, it drops it
// with the reason. The first pass keyed it as it keys a decoded frame (IPv4
// to our MAC: the subscriber's MAC, or the ISP's VRF and the destination),
// so the lookup's result serves fromSubscriber or fromISP as it is.
func (p *Processor) laneDecoded(in uint8, i int, f []byte, out *datapath.Verdict) bool {
	if r := p.pkts[i].Decode(f); r != classifier.ReasonNone {
		p.drop(in, out, r)
		return false
	}
	return true
}

// laneOn turns the lane on; tests turn it off to compare.
var laneOn = true
