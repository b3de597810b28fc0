package engine

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/datapath"
)

const (
	backupRouterMAC = 0x02cc00000001 // the backup router taking over the gateway address
	segmentHostMAC  = 0x02dd00000001 // another host on alpha's segment
)

// upstreamDst sends one frame of sub1 (alpha) and returns the destination
// MAC it left on alpha's uplink with (0: not forwarded).
func upstreamDst(t *testing.T, r *rig) uint64 {
	t.Helper()
	out := r.send(0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1000, 2000))
	if len(out[1]) != 1 {
		return 0
	}
	return MAC48([6]byte(out[1][0][0:6]))
}

// TestGARPFailover: VRRP/keepalived failover (RFC 5798 §8.1.2) sends
// gratuitous ARP, request form (SPA == TPA) or reply form (RFC 5227 §2.4):
// forwarding follows at once.
func TestGARPFailover(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	if got := upstreamDst(t, r); got != gwaMAC {
		t.Fatalf("upstream to %#x, want the gateway %#x", got, gwaMAC)
	}
	// Request form.
	r.send(1, arpFrame(t, backupRouterMAC, broadcastMAC, 0, layers.ARPRequest, backupRouterMAC, "192.0.2.1", 0, "192.0.2.1"))
	if got := upstreamDst(t, r); got != backupRouterMAC {
		t.Errorf("after a GARP request: upstream to %#x, want %#x", got, backupRouterMAC)
	}
	// Reply form, back to the first router.
	r.send(1, arpFrame(t, gwaMAC, broadcastMAC, 0, layers.ARPReply, gwaMAC, "192.0.2.1", broadcastMAC, "192.0.2.1"))
	if got := upstreamDst(t, r); got != gwaMAC {
		t.Errorf("after a GARP reply: upstream to %#x, want %#x", got, gwaMAC)
	}
}

// TestARPFromOtherHostWithGatewayIP: a host on the ISP's segment that
// uses the gateway's address as its sender (misconfigured, or spoofing)
// while asking for some other host of the segment — neither a reply to us,
// nor a gratuitous ARP, nor a request for any address of ours — moves every
// subscriber's traffic to its MAC at once. Linux would not (arp locktime:
// an entry updated less than 1 s ago is not overridden except by a GARP),
// and nor would a rule accepting a new MAC only from replies, GARP, or
// requests addressed to us; VRRP failover (GARP, TestGARPFailover)
// works under either.
func TestARPFromOtherHostWithGatewayIP(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	// The genuine gateway answers our request.
	r.send(1, arpFrame(t, gwaMAC, upaMAC, 0, layers.ARPReply, gwaMAC, "192.0.2.1", upaMAC, "192.0.2.2"))
	if got := upstreamDst(t, r); got != gwaMAC {
		t.Fatalf("upstream to %#x, want the gateway %#x", got, gwaMAC)
	}
	// Right after, another host asks for 192.0.2.77 with the gateway's
	// address as its sender.
	r.send(1, arpFrame(t, segmentHostMAC, broadcastMAC, 0, layers.ARPRequest, segmentHostMAC, "192.0.2.1", 0, "192.0.2.77"))
	if got := upstreamDst(t, r); got != gwaMAC {
		t.Errorf("after an unsolicited ARP request from %#x claiming the gateway's address: upstream to %#x, want still %#x",
			uint64(segmentHostMAC), got, uint64(gwaMAC))
	}
	// An unsolicited reply from it within a second of the gateway's
	// (Linux: locktime) does not win either.
	r.send(1, arpFrame(t, segmentHostMAC, upaMAC, 0, layers.ARPReply, segmentHostMAC, "192.0.2.1", upaMAC, "192.0.2.2"))
	if got := upstreamDst(t, r); got != gwaMAC {
		t.Errorf("after a second reply within locktime: upstream to %#x, want still %#x", got, uint64(gwaMAC))
	}
}

// TestSilentGatewayWithdrawLogged: a gateway that stops answering ARP
// (router down, no link loss) is withdrawn after ReachableTime + MaxProbes
// probes; that is logged, as the withdrawal on link loss is ("next hop
// withdrawn: uplink down") and as its return is ("next hop resolved").
func TestSilentGatewayWithdrawLogged(t *testing.T) {
	var buf bytes.Buffer
	r := newRig(t, 64)
	r.c = NewControl(r.s, r.inj, slog.New(slog.NewTextHandler(&buf, nil)))
	r.learn(1, 0, gwaMAC)
	t0 := time.Now()
	for s := 0; s <= 40; s++ {
		r.c.resolve(t0.Add(time.Duration(s) * time.Second))
	}
	if u := r.s.Up.Load().Get(0); u.Resolved {
		t.Fatalf("silent gateway still resolved after 40 s: %+v", u)
	}
	if !strings.Contains(buf.String(), "withdrawn") && !strings.Contains(buf.String(), "lost") {
		t.Errorf("silent gateway withdrawn (traffic to alpha now dropped as no_next_hop) with nothing in the log:\n%s", buf.String())
	}
}

var _ = datapath.MaxPorts

// TestISPSideARPAndICMP: proxy ARP on an uplink answers for that ISP's
// subscribers only (overlapping plans), and ICMP errors from the ISP side
// reach the subscriber (PMTU), an expiring one without an error about it.
func TestISPSideARPAndICMP(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	// 100.64.0.11 is sub1 at alpha and sub3 at beta: beta's router gets
	// beta's uplink MAC, tagged 201.
	out := r.send(2, arpFrame(t, gwbMAC, broadcastMAC, 201, layers.ARPRequest, gwbMAC, "192.0.2.1", 0, "100.64.0.11"))
	if len(out[2]) != 1 {
		t.Fatalf("beta's router: no answer for its subscriber")
	}
	p := decode(t, out[2][0])
	a := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if MAC48([6]byte(a.SourceHwAddress)) != upbMAC || p.Layer(layers.LayerTypeDot1Q) == nil {
		t.Errorf("beta's answer %+v", a)
	}
	// A host other than the gateway asks for alpha's uplink address:
	// answered (and the gateway is not moved).
	if out := r.send(1, arpFrame(t, segmentHostMAC, broadcastMAC, 0, layers.ARPRequest, segmentHostMAC, "192.0.2.50", 0, "192.0.2.2")); len(out[1]) != 1 {
		t.Errorf("no answer for our uplink address to another host")
	}
	// Frag-needed from an Internet router to sub1.
	icmp := func(ttl uint8) []byte {
		ipl := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.ParseIP("198.51.100.1").To4(), DstIP: net.ParseIP("100.64.0.11").To4()}
		body := make([]byte, 36)
		body[0], body[1], body[6], body[7] = 3, 4, 0x05, 0x78 // MTU 1400
		return serialize(t, append(ethLayers(gwaMAC, upaMAC, 0, layers.EthernetTypeIPv4), ipl, gopacket.Payload(body))...)
	}
	if out := r.send(1, icmp(64)); len(out[0]) != 1 {
		t.Errorf("frag-needed from the ISP side not forwarded to the subscriber")
	}
	if out := r.send(1, icmp(1)); len(out[0])+len(out[1]) != 0 {
		t.Errorf("ICMP error with TTL 1: %d/%d frames out, want none (no error about an error)", len(out[0]), len(out[1]))
	}
}
