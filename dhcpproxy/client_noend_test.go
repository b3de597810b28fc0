package dhcpproxy

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
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

// FuzzClientPayload feeds arbitrary DHCP payloads from a registered and
// an unregistered subscriber in well-formed frames (FuzzHandleFrame's
// frames rarely get past the UDP checksum to the DHCP parser): the proxy
// must not panic, what it relays to the ISP must parse with END required
// and carry exactly one Option 82, ours, and nothing it sends on the
// access goes to a MAC other than the sender's or broadcast.
func FuzzClientPayload(f *testing.F) {
	const reg, unreg = 0x020000000101, 0x020000000199
	d := discover(f, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	f.Add(d.ToBytes())
	b := d.ToBytes()
	end := bytes.LastIndexByte(b, optEnd)
	f.Add(b[:end:end])                       // no END
	f.Add(append(b[:end:end], 0, 0, 0))      // no END, padding
	f.Add(append(b[:end:end], 0, 0, 12))     // a lone code after padding
	f.Add(append(b[:end:end], 12, 9, 'h'))   // an option overrunning the end
	f.Add(append(b[:end:end], 0, optEnd, 1)) // END in the padding
	st, err := subscribers.Open(filepath.Join(f.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	if err := st.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		f.Fatal(err)
	}
	snd := &fakeSender{}
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(Config{Limits: Limits{Timeout: time.Second, MaxPending: 64, MACRate: 1e6, MACBurst: 1e6, CircuitRate: 1e6, CircuitBurst: 1e6, MaxBindingsPerCircuit: 10},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs:     []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr, Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
	}, st, storeRegistry{st}, tab, snd, nil)
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, src := range []uint64{reg, unreg} {
			frame := fib.UDPFrame(0xffffffffffff, src, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload)
			p.HandleFrame(accPort, frame)
			p.committing.Wait()
			p.notes.wait()
			for _, s := range snd.take() {
				switch s.port {
				case accPort:
					if dst := binding.MAC48([6]byte(s.frame[:6])); dst != src && dst != 0xffffffffffff {
						t.Fatalf("a message of %012x's sent to %012x", src, dst)
					}
				case upPort:
					var pkt classifier.Packet
					if pkt.Decode(s.frame) != classifier.ReasonNone {
						continue // ARP for the next hop
					}
					raw, ok := udpPayload(&pkt, s.frame)
					if !ok {
						continue
					}
					m, err := dhcpv4.FromBytes(raw)
					if err != nil {
						t.Fatalf("relayed a message that does not parse with END required: %v\n%x", err, raw)
					}
					n := 0
					forEachOption(raw, func(code byte, data []byte) {
						if code == optRelayAgentInfo {
							n++
						}
					})
					if n != 1 || m.Options.Get(dhcpv4.OptionRelayAgentInformation) == nil {
						t.Fatalf("relayed with %d Option 82 instances", n)
					}
				}
			}
		}
	})
}
