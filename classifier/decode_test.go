package classifier

import (
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

// hexFrame turns an annotated hex dump into bytes: everything after '#' on a
// line is a comment, whitespace is ignored.
func hexFrame(s string) []byte {
	var clean strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		panic(err)
	}
	return b
}

var (
	frameARP = hexFrame(`
		ffffffffffff  # dst: broadcast
		02aabbccdd01  # src
		0806          # ARP
		0001          # htype Ethernet
		0800          # ptype IPv4
		06 04         # hlen, plen
		0001          # op: request
		02aabbccdd01  # sha
		c0a80164      # spa 192.168.1.100
		000000000000  # tha
		c0a80101      # tpa 192.168.1.1
		000000000000000000000000000000000000  # padding to 60 bytes
	`)
	frameVLANDHCP = hexFrame(`
		ffffffffffff  # dst: broadcast
		02aabbccdd01  # src
		8100 0064     # 802.1Q, PCP 0, VID 100
		0800          # IPv4
		45 00 0020    # version 4, IHL 5; TOS; total length 32
		1234 0000     # id; flags 0, offset 0
		40 11 689a    # TTL 64, UDP, checksum
		00000000      # src 0.0.0.0
		ffffffff      # dst 255.255.255.255
		0044 0043     # UDP 68 -> 67
		000c 0000     # UDP length 12, checksum none
		01010600      # payload (start of BOOTP)
		0000000000000000000000000000000000000000  # padding to 64 bytes
	`)
	frameTCP = hexFrame(`
		020000000099  # dst: us
		02aabbccdd01  # src
		0800          # IPv4
		45 00 0028    # IHL 5, total length 40
		abcd 4000     # id; DF
		3f 06 75f1    # TTL 63, TCP, checksum
		0a000002      # src 10.0.0.2
		08080808      # dst 8.8.8.8
		c738 01bb     # TCP 51000 -> 443
		00000001 00000000  # seq, ack
		5002 ffff 0000 0000  # offset 5, SYN, window, checksum, urgent
		000000000000  # padding to 60 bytes
	`)
	frameOptions = hexFrame(`
		020000000099 02aabbccdd01 0800
		46 00 0024    # IHL 6 (24 bytes), total length 36
		0001 0000
		40 11 63c5    # TTL 64, UDP
		0a000002 0a000001
		01010100      # options: NOP NOP NOP EOL
		1234 0035 000c 0000  # UDP 4660 -> 53, length 12
		deadbeef      # payload
	`)
	frameFragTail = hexFrame(`
		020000000099 02aabbccdd01 0800
		45 00 001c    # total length 28
		0002 00b9     # MF 0, offset 185 (1480 bytes)
		40 11 6614    # UDP (but no header in this fragment)
		0a000002 0a000001
		0102030405060708  # 8 bytes of the middle of the datagram
	`)
	frameFragFirst = hexFrame(`
		020000000099 02aabbccdd01 0800
		45 00 0024    # total length 36
		0004 2000     # MF 1, offset 0
		40 11 46c3
		0a000002 0a000001
		0044 0043 0100 0000  # UDP 68 -> 67, length 256 (the rest follows)
		00000000 00000000
	`)
	frameICMP = hexFrame(`
		020000000099 02aabbccdd01 0800
		45 00 001c    # total length 28
		0003 0000
		01 01 a5dc    # TTL 1, ICMP
		0a000002 0a000001
		0800f7ff00000000  # echo request
	`)
)

// with returns a copy of b with b[i:] overwritten by the bytes of patch.
func with(b []byte, i int, patch string) []byte {
	c := append([]byte(nil), b...)
	copy(c[i:], hexFrame(patch))
	return c
}

func TestDecodeTable(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  Reason
		check func(t *testing.T, p *Packet)
	}{
		{"arp request", frameARP, ReasonNone, func(t *testing.T, p *Packet) {
			want := Packet{Dst: BroadcastMAC, Src: 0x02aabbccdd01, EtherType: EtherTypeARP, L3: 14, Kind: KindARP,
				ARPOp: 1, SHA: 0x02aabbccdd01, SPA: 0xc0a80164, TPA: 0xc0a80101}
			if *p != want {
				t.Errorf("got %+v\nwant %+v", *p, want)
			}
		}},
		{"vlan dhcp discover", frameVLANDHCP, ReasonNone, func(t *testing.T, p *Packet) {
			want := Packet{Dst: BroadcastMAC, Src: 0x02aabbccdd01, Tagged: true, VLAN: 100, EtherType: EtherTypeIPv4,
				L3: 18, Kind: KindIPv4, SrcIP: 0, DstIP: 0xffffffff, TTL: 64, Proto: ProtoUDP, IHL: 20, TotalLen: 32,
				L4: 38, SrcPort: 68, DstPort: 67}
			if *p != want {
				t.Errorf("got %+v\nwant %+v", *p, want)
			}
			if !IsDHCP(p) {
				t.Error("IsDHCP = false")
			}
		}},
		{"tcp syn", frameTCP, ReasonNone, func(t *testing.T, p *Packet) {
			want := Packet{Dst: 0x020000000099, Src: 0x02aabbccdd01, EtherType: EtherTypeIPv4, L3: 14, Kind: KindIPv4,
				SrcIP: 0x0a000002, DstIP: 0x08080808, TTL: 63, Proto: ProtoTCP, IHL: 20, TotalLen: 40, L4: 34,
				SrcPort: 51000, DstPort: 443, DF: true}
			if *p != want {
				t.Errorf("got %+v\nwant %+v", *p, want)
			}
			if IsDHCP(p) {
				t.Error("IsDHCP = true")
			}
		}},
		{"ipv4 options", frameOptions, ReasonNone, func(t *testing.T, p *Packet) {
			if p.IHL != 24 || p.L4 != 38 || p.SrcPort != 4660 || p.DstPort != 53 || p.TotalLen != 36 {
				t.Errorf("IHL %d L4 %d ports %d->%d total %d", p.IHL, p.L4, p.SrcPort, p.DstPort, p.TotalLen)
			}
		}},
		{"non-first fragment", frameFragTail, ReasonNone, func(t *testing.T, p *Packet) {
			if !p.Frag || p.FragOff != 1480 || p.SrcPort != 0 || p.DstPort != 0 || IsDHCP(p) {
				t.Errorf("Frag %v FragOff %d ports %d->%d", p.Frag, p.FragOff, p.SrcPort, p.DstPort)
			}
		}},
		{"first fragment", frameFragFirst, ReasonNone, func(t *testing.T, p *Packet) {
			if !p.Frag || p.FragOff != 0 || p.SrcPort != 68 || p.DstPort != 67 || !IsDHCP(p) {
				t.Errorf("Frag %v FragOff %d ports %d->%d", p.Frag, p.FragOff, p.SrcPort, p.DstPort)
			}
		}},
		{"icmp ttl 1", frameICMP, ReasonNone, func(t *testing.T, p *Packet) {
			if p.Proto != 1 || p.TTL != 1 || p.L4 != 34 || p.SrcPort != 0 {
				t.Errorf("Proto %d TTL %d L4 %d ports %d", p.Proto, p.TTL, p.L4, p.SrcPort)
			}
		}},
		{"priority tag is vlan 0 untagged", with(frameVLANDHCP, 14, "e000"), ReasonNone, func(t *testing.T, p *Packet) {
			if p.Tagged || p.VLAN != 0 || p.L3 != 18 {
				t.Errorf("Tagged %v VLAN %d L3 %d", p.Tagged, p.VLAN, p.L3)
			}
		}},
		{"vlan pcp and dei ignored", with(frameVLANDHCP, 14, "f064"), ReasonNone, func(t *testing.T, p *Packet) {
			if !p.Tagged || p.VLAN != 100 {
				t.Errorf("Tagged %v VLAN %d", p.Tagged, p.VLAN)
			}
		}},

		{"empty", nil, ReasonMalformed, nil},
		{"13 bytes", frameTCP[:13], ReasonMalformed, nil},
		{"multicast source", with(frameTCP, 6, "01005e000001"), ReasonBadSourceMAC, nil},
		{"broadcast source", with(frameTCP, 6, "ffffffffffff"), ReasonBadSourceMAC, nil},
		{"zero source", with(frameTCP, 6, "000000000000"), ReasonBadSourceMAC, nil},
		{"ipv6", with(frameTCP, 12, "86dd"), ReasonUnsupportedEtherType, nil},
		{"lldp", with(frameTCP, 12, "88cc"), ReasonUnsupportedEtherType, nil},
		{"qinq outer", with(frameVLANDHCP, 12, "88a8"), ReasonUnsupportedEtherType, nil},
		{"double 802.1Q", with(frameVLANDHCP, 16, "8100"), ReasonUnsupportedEtherType, nil},
		{"802.1Q then 802.1ad", with(frameVLANDHCP, 16, "88a8"), ReasonUnsupportedEtherType, nil},
		{"vlan ipv6", with(frameVLANDHCP, 16, "86dd"), ReasonUnsupportedEtherType, nil},

		{"arp htype 6", with(frameARP, 14, "0006"), ReasonMalformed, nil},
		{"arp ptype ipv6", with(frameARP, 16, "86dd"), ReasonMalformed, nil},
		{"arp hlen 8", with(frameARP, 18, "08"), ReasonMalformed, nil},
		{"arp plen 16", with(frameARP, 19, "10"), ReasonMalformed, nil},
		{"arp 27 bytes", frameARP[:14+27], ReasonMalformed, nil},

		{"ip version 6 in ipv4", with(frameTCP, 14, "65"), ReasonMalformed, nil},
		{"ihl 4", with(frameTCP, 14, "44"), ReasonMalformed, nil},
		{"ihl 15 past frame", with(frameICMP, 14, "4f"), ReasonMalformed, nil},
		{"total length < ihl", with(frameTCP, 16, "0010"), ReasonMalformed, nil},
		{"total length past frame", with(frameTCP, 16, "0050"), ReasonMalformed, nil},
		{"bad checksum", with(frameTCP, 24, "75f2"), ReasonBadChecksum, nil},
		{"ttl changed, checksum not", with(frameTCP, 22, "40"), ReasonBadChecksum, nil},
		// total length 24 with a fixed checksum: only 4 bytes of UDP header.
		{"udp header cut by total length", fixChecksum(with(frameVLANDHCP, 20, "0018"), 18), ReasonMalformed, nil},
		{"total length covers the padding", fixChecksum(with(frameTCP, 16, "002e"), 14), ReasonNone, nil},
		{"tcp header 16 bytes", fixChecksum(with(frameTCP, 16, "0024"), 14), ReasonMalformed, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			got := p.Decode(tc.frame)
			if got != tc.want {
				t.Fatalf("Decode = %v, want %v", got, tc.want)
			}
			if got != ReasonNone && p.Kind != KindOther {
				t.Errorf("Kind = %d on a drop", p.Kind)
			}
			if tc.check != nil {
				tc.check(t, &p)
			}
		})
	}
}

// fixChecksum recomputes the IPv4 header checksum of the header at off.
func fixChecksum(b []byte, off int) []byte {
	ihl := int(b[off]&0xf) * 4
	b[off+10], b[off+11] = 0, 0
	var sum uint32
	for i := off; i < off+ihl; i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	b[off+10], b[off+11] = byte(^sum>>8), byte(^sum)
	return b
}

// TestDecodeResets decodes a rich frame, then poorer ones into the same
// Packet, and checks nothing stale survives.
func TestDecodeResets(t *testing.T) {
	for _, second := range [][]byte{frameARP, frameFragTail, frameICMP, frameTCP[:10], with(frameTCP, 12, "86dd")} {
		var fresh, reused Packet
		reused.Decode(frameVLANDHCP)
		reused.Decode(frameARP)
		reused.Decode(frameVLANDHCP)
		r1, r2 := fresh.Decode(second), reused.Decode(second)
		if r1 != r2 || fresh != reused {
			t.Errorf("reused Packet differs from fresh one:\n%+v\n%+v", reused, fresh)
		}
	}
}

// checkOffsets verifies the ReasonNone contract: every offset is inside b.
func checkOffsets(t *testing.T, p *Packet, b []byte) {
	t.Helper()
	switch p.Kind {
	case KindARP:
		if p.L3+28 > len(b) {
			t.Fatalf("ARP at %d past %d bytes", p.L3, len(b))
		}
	case KindIPv4:
		if p.L3 < 14 || p.IHL < 20 || p.L4 != p.L3+p.IHL || p.TotalLen < p.IHL || p.L3+p.TotalLen > len(b) {
			t.Fatalf("L3 %d IHL %d L4 %d TotalLen %d, frame %d bytes", p.L3, p.IHL, p.L4, p.TotalLen, len(b))
		}
		if p.FragOff == 0 && (p.Proto == ProtoUDP && p.IHL+8 > p.TotalLen || p.Proto == ProtoTCP && p.IHL+20 > p.TotalLen) {
			t.Fatalf("ports past the datagram: IHL %d TotalLen %d proto %d", p.IHL, p.TotalLen, p.Proto)
		}
	default:
		t.Fatalf("ReasonNone with Kind %d", p.Kind)
	}
}

// TestDecodeTruncated cuts valid frames at every offset. A cut inside the
// headers must be a drop; a cut only into padding or payload past the IPv4
// total length is not reachable (TotalLen covers it), so every cut below the
// header end must fail and none may panic.
func TestDecodeTruncated(t *testing.T) {
	for _, f := range []struct {
		name   string
		frame  []byte
		needed int // shortest decodable prefix
	}{
		{"arp", frameARP, 14 + 28},
		{"vlan dhcp", frameVLANDHCP, 18 + 32},
		{"tcp", frameTCP, 14 + 40},
		{"options", frameOptions, 14 + 36},
		{"frag tail", frameFragTail, 14 + 28},
		{"frag first", frameFragFirst, 14 + 36},
		{"icmp", frameICMP, 14 + 28},
	} {
		for n := 0; n <= len(f.frame); n++ {
			var p Packet
			r := p.Decode(f.frame[:n])
			switch {
			case n < f.needed && r == ReasonNone:
				t.Errorf("%s cut to %d bytes: decoded (needs %d)", f.name, n, f.needed)
			case n >= f.needed && r != ReasonNone:
				t.Errorf("%s cut to %d bytes: %v", f.name, n, r)
			case r == ReasonNone:
				checkOffsets(t, &p, f.frame[:n])
			}
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	var p Packet
	frames := [][]byte{frameARP, frameVLANDHCP, frameTCP, frameFragTail, frameTCP[:20]}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, f := range frames {
			p.Decode(f)
			_ = IsDHCP(&p)
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates %.1f times per run", allocs)
	}
}

func TestMAC(t *testing.T) {
	b := []byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0xff}
	if m := MAC(b); m != 0x02aabbccdd01 {
		t.Fatalf("MAC = %#x", m)
	}
	if !IsMulticastMAC(BroadcastMAC) || !IsMulticastMAC(0x01005e000001) || IsMulticastMAC(0x02aabbccdd01) {
		t.Fatal("IsMulticastMAC")
	}
}

func TestIsDHCP(t *testing.T) {
	for _, tc := range []struct {
		p    Packet
		want bool
	}{
		{Packet{Kind: KindIPv4, Proto: ProtoUDP, SrcPort: 68, DstPort: 67}, true},
		{Packet{Kind: KindIPv4, Proto: ProtoUDP, SrcPort: 67, DstPort: 68}, true},
		{Packet{Kind: KindIPv4, Proto: ProtoUDP, SrcPort: 67, DstPort: 67}, true},
		{Packet{Kind: KindIPv4, Proto: ProtoUDP, SrcPort: 68, DstPort: 53}, false},
		{Packet{Kind: KindIPv4, Proto: ProtoTCP, SrcPort: 68, DstPort: 67}, false},
		{Packet{Kind: KindIPv4, Proto: ProtoUDP, SrcPort: 68, DstPort: 67, Frag: true, FragOff: 8}, false},
		{Packet{Kind: KindARP, Proto: ProtoUDP, SrcPort: 68, DstPort: 67}, false},
	} {
		if got := IsDHCP(&tc.p); got != tc.want {
			t.Errorf("IsDHCP(%+v) = %v", tc.p, got)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{frameARP, frameVLANDHCP, frameTCP, frameOptions, frameFragTail, frameFragFirst, frameICMP} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		r := p.Decode(b)
		if r >= NumReasons {
			t.Fatalf("reason %d", r)
		}
		if r == ReasonNone {
			checkOffsets(t, &p, b)
			// Re-decoding gives the same result (no state in Packet).
			q := p
			if p.Decode(b) != ReasonNone || p != q {
				t.Fatal("second Decode differs")
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, f := range []struct {
		name  string
		frame []byte
	}{{"vlan_dhcp", frameVLANDHCP}, {"tcp", frameTCP}, {"arp", frameARP}} {
		b.Run(f.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(f.frame)))
			for b.Loop() {
				if p.Decode(f.frame) != ReasonNone {
					b.Fatal("drop")
				}
			}
		})
	}
}

// TestChecksumOK checks ChecksumOK against RFC 1071's sum of big-endian
// 16-bit words, for random headers of every IPv4 length: valid ones (the
// checksum field set to make the sum 0xffff), and each with one byte
// changed, which must fail.
func TestChecksumOK(t *testing.T) {
	ref := func(h []byte) uint16 {
		var s uint32
		for i := 0; i < len(h); i += 2 {
			s += uint32(h[i])<<8 | uint32(h[i+1])
		}
		for s > 0xffff {
			s = s&0xffff + s>>16
		}
		return uint16(s)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for ihl := 5; ihl <= 15; ihl++ {
		for range 2000 {
			h := make([]byte, ihl*4)
			for i := range h {
				h[i] = byte(rng.Uint32())
			}
			h[10], h[11] = 0, 0
			c := ^ref(h)
			h[10], h[11] = byte(c>>8), byte(c)
			if !ChecksumOK(h) {
				t.Fatalf("valid %d-byte header % x: ChecksumOK false", len(h), h)
			}
			i := rng.IntN(len(h))
			d := byte(1 + rng.IntN(255))
			h[i] += d
			if want := ref(h) == 0xffff; ChecksumOK(h) != want {
				t.Fatalf("%d-byte header % x (byte %d changed): ChecksumOK %v, RFC 1071 sum says %v", len(h), h, i, !want, want)
			}
		}
	}
}
