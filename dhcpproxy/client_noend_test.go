package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// withoutEnd is client message m's bytes with its END option and the
// padding after it cut off: its options run to its last byte.
func withoutEnd(t *testing.T, m *dhcpv4.DHCPv4) []byte {
	t.Helper()
	b := m.ToBytes()
	i := optionsStart
	for i < len(b) && b[i] != optEnd {
		if b[i] == optPad {
			i++
			continue
		}
		i += 2 + int(b[i+1])
	}
	if i >= len(b) {
		t.Fatalf("no END in %x", b)
	}
	return b[:i:i]
}

// sendRaw sends payload as client m48's broadcast DHCP message.
func (r *prig) sendRaw(m48 uint64, payload []byte) {
	r.p.HandleFrame(accPort, fib.UDPFrame(0xffffffffffff, m48, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload))
}

// relayedRaw returns the bytes of the DHCP messages sent to the ISP so
// far, leaving them for serve.
func (r *prig) relayedRaw() [][]byte {
	r.snd.mu.Lock()
	defer r.snd.mu.Unlock()
	var out [][]byte
	for _, s := range r.snd.frames {
		var p classifier.Packet
		if s.port != upPort || p.Decode(s.frame) != classifier.ReasonNone {
			continue
		}
		if pl, ok := udpPayload(&p, s.frame); ok {
			out = append(out, pl)
		}
	}
	return out
}

// wantEndAfter82 checks a relayed message: it parses with END required,
// its last option is Option 82, then END and nothing but padding.
func wantEndAfter82(t *testing.T, what string, raw []byte) {
	t.Helper()
	if _, err := dhcpv4.FromBytes(raw); err != nil {
		t.Fatalf("%s: relayed message does not parse with END required: %v", what, err)
	}
	last, i := -1, optionsStart
	for i < len(raw) && raw[i] != optEnd {
		if raw[i] == optPad {
			i++
			continue
		}
		last = int(raw[i])
		i += 2 + int(raw[i+1])
	}
	if last != optRelayAgentInfo {
		t.Errorf("%s: last option before END is %d, want Option 82", what, last)
	}
	for _, c := range raw[i+1:] {
		if c != optPad {
			t.Fatalf("%s: %x after END", what, raw[i+1:])
		}
	}
}

// A client message whose options run to its end, or into padding, without
// an END option (RFC 2131 §4.1 asks for one; ISC dhcpd and Kea accept a
// message without it) is relayed, with Option 82 last and an END after
// it, and the subscriber gets its OFFER and ACK: it was refused as
// malformed (fails without parseMessage in fromClient). One whose last
// option runs past the end, or that ends on a lone code, still is.
func TestClientMessageWithoutEnd(t *testing.T) {
	m48 := binding.MAC48([6]byte(mac(s1)))
	for _, tt := range []struct {
		name string
		tail []byte // after the options
	}{
		{"to the last byte", nil},
		{"into padding", make([]byte, 40)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newPRig(t)
			r.sendRaw(m48, append(withoutEnd(t, discover(t, dhcpv4.WithHwAddr(mac(s1)))), tt.tail...))
			up := r.relayedRaw()
			if len(up) != 1 {
				t.Fatalf("%d messages relayed, want the DISCOVER (counters %v)", len(up), r.p.Counters())
			}
			wantEndAfter82(t, "DISCOVER", up[0])
			got := r.serve(kea(t, time.Minute))
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("got %v, want an OFFER", got)
			}
			req, _ := dhcpv4.NewRequestFromOffer(got[0])
			r.sendRaw(m48, append(withoutEnd(t, req), tt.tail...))
			if up := r.relayedRaw(); len(up) != 1 {
				t.Fatalf("%d messages relayed, want the REQUEST", len(up))
			} else {
				wantEndAfter82(t, "REQUEST", up[0])
			}
			if got := r.serve(kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(m48) {
				t.Fatalf("got %v, bound %v: want an ACK and a binding", got, r.tab.isBound(m48))
			}
		})
	}
	for _, tt := range []struct {
		name string
		tail []byte
	}{
		{"an option overrunning the end", []byte{12, 5, 'h', 'o'}},
		{"a lone code at the end", []byte{12}},
		{"a lone code after padding", []byte{0, 0, 12}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newPRig(t)
			r.sendRaw(m48, append(withoutEnd(t, discover(t, dhcpv4.WithHwAddr(mac(s1)))), tt.tail...))
			r.p.notes.wait()
			if n := r.p.Counters()["malformed"]; n != 1 || len(r.relayedRaw()) != 0 {
				t.Errorf("malformed %d, relayed %d: want refused as malformed", n, len(r.relayedRaw()))
			}
		})
	}
}
