package engine

import (
	"bytes"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestGardenHTTPRedirect: a garden device's HTTP to another address than
// the portal's (an IP literal, a cached answer) is answered by the
// datapath without state: SYN-ACK from that address (MSS 1460), the
// request answered with a redirect to the portal (PSH, FIN), the client's
// FIN acknowledged; untagged and tagged, every checksum valid. Before, it
// was dropped and the browser waited (a portal trial).
func TestGardenHTTPRedirect(t *testing.T) {
	r := gardenRig(t)
	const dst = "198.51.100.10"
	req := []byte("GET / HTTP/1.1\r\nHost: 198.51.100.10\r\n\r\n")
	for _, s := range []gardenSub{onboard, onboard5} {
		answer := func(seg layers.TCP, payload []byte) *layers.TCP {
			t.Helper()
			f := only(t, r.send(0, tcpFrame(t, s, dst, 80, seg, payload)), 0)
			ipl := checkIPv4(t, f, s.mac, accMAC, s.vlan, 64)
			if ipl.SrcIP.String() != dst || ipl.DstIP.String() != s.ip || !l4Valid(ipl) {
				t.Fatalf("answer %v → %v, checksum valid %v", ipl.SrcIP, ipl.DstIP, l4Valid(ipl))
			}
			tcp := decode(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.SrcPort != 80 || tcp.DstPort != 40000 || tcp.RST {
				t.Fatalf("answer %d → %d rst %v", tcp.SrcPort, tcp.DstPort, tcp.RST)
			}
			return tcp
		}
		before := r.s.Counters()[0]
		synack := answer(layers.TCP{SYN: true, Seq: 1000}, nil)
		if !synack.SYN || !synack.ACK || synack.Ack != 1001 || len(synack.Options) != 1 ||
			synack.Options[0].OptionType != layers.TCPOptionKindMSS || !bytes.Equal(synack.Options[0].OptionData, []byte{0x05, 0xb4}) {
			t.Fatalf("SYN-ACK %+v", synack)
		}
		isn := synack.Seq
		resp := answer(layers.TCP{ACK: true, PSH: true, Seq: 1001, Ack: isn + 1}, req)
		if !resp.ACK || !resp.PSH || !resp.FIN || resp.SYN || resp.Seq != isn+1 || resp.Ack != 1001+uint32(len(req)) {
			t.Fatalf("answer to the request %+v", resp)
		}
		if !bytes.HasPrefix(resp.Payload, []byte("HTTP/1.1 302 Found\r\nLocation: http://"+portal+"/\r\n")) || !bytes.HasSuffix(resp.Payload, []byte("\r\n\r\n")) {
			t.Errorf("redirect %q", resp.Payload)
		}
		fin := answer(layers.TCP{ACK: true, FIN: true, Seq: 1001 + uint32(len(req)), Ack: isn + 2 + uint32(len(resp.Payload))}, nil)
		if !fin.ACK || fin.FIN || fin.PSH || fin.Seq != isn+2+uint32(len(resp.Payload)) || fin.Ack != 1002+uint32(len(req)) || len(fin.Payload) != 0 {
			t.Errorf("ACK of the client's FIN %+v", fin)
		}
		after := r.s.Counters()[0]
		if after.GardenRedirects != before.GardenRedirects+1 || after.Drops != before.Drops || after.Up != before.Up {
			t.Errorf("redirects %d → %d, drops %v → %v", before.GardenRedirects, after.GardenRedirects, before.Drops, after.Drops)
		}
	}
}

// TestGardenEveryFrameCounted: every frame the walled garden sends is
// counted once, under DNSAnswers, GardenResets, GardenRedirects or
// GardenHandshake: a DNS answer, a reset (HTTPS elsewhere), and an HTTP
// exchange's SYN-ACK, redirect and ACK of the client's FIN. Before, the
// SYN-ACK and the FIN's ACK were counted nowhere (3 of 5 frames).
func TestGardenEveryFrameCounted(t *testing.T) {
	r := gardenRig(t)
	const dst = "198.51.100.10"
	req := []byte("GET / HTTP/1.1\r\nHost: 198.51.100.10\r\n\r\n")
	sum := func() (n, hs uint64) {
		c := r.s.Counters()[0]
		return c.DNSAnswers + c.GardenResets + c.GardenRedirects + c.GardenHandshake, c.GardenHandshake
	}
	before, hsBefore := sum()
	sent := 0
	send := func(f []byte) *layers.TCP {
		t.Helper()
		out := only(t, r.send(0, f), 0)
		sent++
		tcp, _ := decode(t, out).Layer(layers.LayerTypeTCP).(*layers.TCP)
		return tcp
	}
	send(dnsFrame(t, onboard, "8.8.8.8", query(1, "example.com", dnsTypeA, nil)))
	send(tcpFrame(t, onboard, dst, 443, layers.TCP{SYN: true, Seq: 7}, nil))
	synack := send(tcpFrame(t, onboard, dst, 80, layers.TCP{SYN: true, Seq: 1000}, nil))
	isn := synack.Seq
	resp := send(tcpFrame(t, onboard, dst, 80, layers.TCP{ACK: true, PSH: true, Seq: 1001, Ack: isn + 1}, req))
	send(tcpFrame(t, onboard, dst, 80, layers.TCP{ACK: true, FIN: true, Seq: 1001 + uint32(len(req)), Ack: isn + 2 + uint32(len(resp.Payload))}, nil))
	after, hsAfter := sum()
	if after-before != uint64(sent) || hsAfter-hsBefore != 2 {
		t.Errorf("the garden sent %d frames, its counters grew by %d (handshake %d, want 2)", sent, after-before, hsAfter-hsBefore)
	}
}
