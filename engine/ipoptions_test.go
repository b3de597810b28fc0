package engine

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
)

// optFrame is a UDP datagram with IPv4 options opts (padded by gopacket
// to a 4-byte multiple) from src to dst, in a frame from MAC from to MAC to.
func optFrame(t testing.TB, from, to uint64, src, dst string, opts []layers.IPv4Option) []byte {
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Options: opts}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	return serialize(t, append(ethLayers(from, to, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 8)))...)
}

// TestIPOptions: a subscriber's or an ISP's datagram with a source route
// (LSRR, SSRR) is not routed (RFC 7126 §4.3, §4.4: a sender choosing its
// path through the ISP's network), nor one whose options do not parse;
// other options (record route, timestamp, padding) are routed as before.
func TestIPOptions(t *testing.T) {
	rr := layers.IPv4Option{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}
	ts := layers.IPv4Option{OptionType: 68, OptionLength: 8, OptionData: []byte{5, 0, 0, 0, 0, 0}}
	nop := layers.IPv4Option{OptionType: 1, OptionLength: 1}
	lsrr := layers.IPv4Option{OptionType: 131, OptionLength: 7, OptionData: []byte{4, 192, 0, 2, 99}}
	ssrr := layers.IPv4Option{OptionType: 137, OptionLength: 7, OptionData: []byte{4, 192, 0, 2, 99}}
	for _, c := range []struct {
		name   string
		opts   []layers.IPv4Option
		routed bool
	}{
		{"record route", []layers.IPv4Option{rr}, true},
		{"nop, timestamp", []layers.IPv4Option{nop, ts}, true},
		{"LSRR", []layers.IPv4Option{lsrr}, false},
		{"nop, SSRR", []layers.IPv4Option{nop, ssrr}, false},
		{"record route, LSRR", []layers.IPv4Option{rr, lsrr}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 64)
			r.bindAll()
			r.resolve()
			up := r.send(0, optFrame(t, sub1, accMAC, "100.64.0.11", "198.51.100.10", c.opts))
			down := r.send(1, optFrame(t, gwaMAC, upaMAC, "198.51.100.10", "100.64.0.11", c.opts))
			if got := len(up[1]) == 1; got != c.routed {
				t.Errorf("from the subscriber: routed %v, want %v (drops %v)", got, c.routed, r.s.Counters()[0].Drops)
			}
			if got := len(down[0]) == 1; got != c.routed {
				t.Errorf("from the ISP: routed %v, want %v (drops %v)", got, c.routed, r.s.Counters()[1].Drops)
			}
			if !c.routed && (r.dropCount(0, classifier.ReasonIPOptions) != 1 || r.dropCount(1, classifier.ReasonIPOptions) != 1) {
				t.Errorf("ip_options drops %d and %d, want 1 each", r.dropCount(0, classifier.ReasonIPOptions), r.dropCount(1, classifier.ReasonIPOptions))
			}
		})
	}
	// Options that do not parse: a length of 1, a length past the header.
	for _, o := range [][]byte{{7, 1, 0, 0}, {7, 9, 4, 0}} {
		f := optFrame(t, sub1, accMAC, "100.64.0.11", "198.51.100.10", []layers.IPv4Option{rr})
		var p classifier.Packet
		if r := p.Decode(f); r != classifier.ReasonNone {
			t.Fatal(r)
		}
		copy(f[p.L3+20:], o)
		if r := ipOptions(&p, f); r != classifier.ReasonIPOptions {
			t.Errorf("options % x: %v, want ip_options", o, r)
		}
	}
}

// TestLastDropFrom: a port keeps the source MAC of its last frame dropped
// for a reason a subscriber causes, and when: a trial's operator saw
// spoofed_source=3 in ctl status and nothing naming the device.
func TestLastDropFrom(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	before := time.Now()
	r.send(0, udpFrame(t, sub2, accMAC, 0, "100.64.0.150", "198.51.100.10", 64, 1, 2)) // not its address
	var got []DropFrom
	for _, d := range r.s.LastFrom(0) {
		if d.Reason == classifier.ReasonSpoofedSource {
			got = append(got, d)
		}
	}
	if len(got) != 1 || got[0].MAC != sub2 || got[0].At.Before(before.Add(-time.Second)) || got[0].At.After(time.Now().Add(time.Second)) {
		t.Errorf("last spoofed_source drop on port 0: %+v, want %x now", got, sub2)
	}
	if n := r.dropCount(0, classifier.ReasonSpoofedSource); n != 1 {
		t.Errorf("spoofed_source %d, want 1", n)
	}
}
